"""Resolve the spec's model references (base, vae, FLUX parts) into what sd-scripts is given.

Local paths become absolute. A hub repo (`hf://owner/repo`) is passed as its repo id: sd-scripts loads
it with diffusers, which downloads it on first use. A hub file (`hf://owner/repo/file`) must already be
in the Hugging Face cache, since sd-scripts only opens local files. Nothing here touches the network.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from kohya_wrap.errors import Problem
from kohya_wrap.spec.models import ModelSpec, parse_model_ref

MODEL_PARTS = ("base", "vae", "clip_l", "t5xxl", "ae")

# Files no model is ever saved as (sd-scripts reads .safetensors, else torch.load's .ckpt/.pt/.bin/.pth):
# a photo, a caption or a config named by mistake. Any other suffix is left to sd-scripts.
NOT_MODEL_SUFFIXES = frozenset(
    ".jpg .jpeg .png .webp .bmp .gif .tif .tiff .avif .heic .jxl .txt .caption .md .json .jsonl .toml .yaml .yml "
    ".csv .html .py .sh .zip .tar .gz .7z .rar .log".split()
)


@dataclass(frozen=True)
class ResolvedRef:
    field: str
    raw: str
    value: str | None  # what sd-scripts gets; None when it cannot be resolved
    problem: Problem | None = None
    note: str | None = None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def hub_cache_dir() -> Path:
    """The Hugging Face cache as huggingface_hub finds it, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _cached(repo: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=hub_cache_dir())
    return found if isinstance(found, str) else None


def _not_a_model(where: str, path: Path) -> Problem | None:
    """What makes a local path no model file or folder at all: missing, unreadable, a device, pipe or
    socket (`/dev/null`), an empty file (an interrupted download), or a photo, caption or config."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return Problem(where, f"{path} does not exist", "fix the path, or use hf://owner/repo for a hub model")
    except OSError as exc:
        return Problem(where, f"{path} cannot be read ({exc.strerror or exc})", "fix the path or its permissions")
    if stat.S_ISDIR(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        return Problem(
            where,
            f"{path} is not a model file (it is a device, pipe or socket)",
            "point at the .safetensors file or the diffusers folder",
        )
    if info.st_size == 0:
        return Problem(
            where,
            f"{path} is empty (0 bytes), not a model",
            "download it again (an interrupted download leaves an empty file), or point at the model file",
        )
    if path.suffix.lower() in NOT_MODEL_SUFFIXES:
        return Problem(
            where,
            f"{path} is not a model file (a {path.suffix} file)",
            "point at the .safetensors (or .ckpt) file or the diffusers folder",
        )
    return None


def resolve_ref(field: str, raw: str, project_root: Path) -> ResolvedRef:
    where = f"model.{field}"
    ref = parse_model_ref(raw)
    if not ref.is_hub:
        path = ref.local_path(project_root)
        problem = _not_a_model(where, path)
        if problem is not None:
            return ResolvedRef(field, raw, None, problem)
        if (
            field == "base"
            and path.is_dir()
            and not ((path / "model_index.json").is_file() or (path / "unet").is_dir())
        ):
            return ResolvedRef(
                field,
                raw,
                None,
                Problem(
                    where,
                    f"{path} is a folder but not a diffusers model (no model_index.json or unet/)",
                    "point at the .safetensors file or the diffusers folder",
                ),
            )
        return ResolvedRef(field, raw, str(path.absolute()))
    assert ref.hub_repo is not None
    download = f"hf download {ref.hub_repo}" + (f" {ref.hub_file}" if ref.hub_file else "")
    if ref.hub_file:
        cached = _cached(ref.hub_repo, ref.hub_file)
        if cached is None:
            return ResolvedRef(
                field,
                raw,
                None,
                Problem(
                    where,
                    f"{raw} is not in the Hugging Face cache (sd-scripts only opens local files)",
                    f"run `{download}`, or set {where} to a local file",
                ),
            )
        return ResolvedRef(field, raw, cached, note=f"{raw} → {cached}")
    if _cached(ref.hub_repo, "model_index.json") is None:
        if _offline():
            return ResolvedRef(
                field,
                raw,
                None,
                Problem(
                    where,
                    f"{raw} is not cached and HF_HUB_OFFLINE is set",
                    f"run `{download}` while online, or set {where} to a local model",
                ),
            )
        return ResolvedRef(
            field, raw, ref.hub_repo, note=f"{raw} is not cached yet: sd-scripts downloads it on the first run"
        )
    return ResolvedRef(field, raw, ref.hub_repo, note=f"{raw} (cached)")


def resolve_model_refs(model: ModelSpec, project_root: Path) -> list[ResolvedRef]:
    return [resolve_ref(f, getattr(model, f), project_root) for f in MODEL_PARTS if getattr(model, f) is not None]
