"""The hub files sd-scripts fetches at start-up, found before launch: its tokenizers, whose repo ids are
read from the installed sd-scripts' own source (the constants its tokenize strategies pass to
`from_pretrained`), looked for where sd-scripts looks (`tokenizer_cache_dir/<owner>_<repo>/`, then the
Hugging Face cache, never the network), and `hf://` base models. The network is asked only when one is
missing: HF_HUB_OFFLINE, else a name lookup of the hub's host that is given up on after 0.8 s."""

from __future__ import annotations

import os
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import urlparse

from kohya_wrap.errors import Finding
from kohya_wrap.sdscripts.locate import SdScripts
from kohya_wrap.sdscripts.modelref import hub_cache_dir
from kohya_wrap.spec.models import ProjectSpec, parse_model_ref
from kohya_wrap.spec.settings import Settings

LOOKUP_TIMEOUT_S = 0.8
TRUTHY = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Tokenizer:
    """A tokenizer sd-scripts loads with `from_pretrained(repo, subfolder=…)` at start-up. `sources` are
    where sd-scripts names the repo (file, constant), newest layout first; `files` what the tokenizer
    class reads, each a group of alternatives of which one must be there."""

    sources: tuple[tuple[str, str], ...]
    subfolder: str | None = None
    files: tuple[tuple[str, ...], ...] = (("vocab.json",), ("merges.txt",))  # CLIPTokenizer's vocabulary and merges
    # read where the repo has them: model_max_length (77), which sd-scripts pads to, and the pad token (SD 2's
    # is "!"); from the hub cache they count as there when the cache records that the repo has none
    extras: tuple[str, ...] = ("tokenizer_config.json", "special_tokens_map.json")

    @property
    def groups(self) -> tuple[tuple[str, ...], ...]:
        return (*self.files, *((name,) for name in self.extras))


# library/strategy_sd.py:17-18,26-32 (v2: the tokenizer/ subfolder of stabilityai/stable-diffusion-2),
# strategy_sdxl.py:18-25, strategy_flux.py:19-27 (T5TokenizerFast: tokenizer.json or spiece.model);
# before the strategies (sd-scripts < 0.9) train_util.py and sdxl_train_util.py named them.
TOKENIZERS: dict[str, tuple[Tokenizer, ...]] = {
    "sd15": (Tokenizer((("library/strategy_sd.py", "TOKENIZER_ID"), ("library/train_util.py", "TOKENIZER_PATH"))),),
    "sd2": (
        Tokenizer(
            (
                ("library/strategy_sd.py", "V2_STABLE_DIFFUSION_ID"),
                ("library/train_util.py", "V2_STABLE_DIFFUSION_PATH"),
            ),
            subfolder="tokenizer",
        ),
    ),
    "sdxl": (
        Tokenizer((("library/strategy_sdxl.py", "TOKENIZER1_PATH"), ("library/sdxl_train_util.py", "TOKENIZER1_PATH"))),
        Tokenizer((("library/strategy_sdxl.py", "TOKENIZER2_PATH"), ("library/sdxl_train_util.py", "TOKENIZER2_PATH"))),
    ),
    "flux": (
        Tokenizer((("library/strategy_flux.py", "CLIP_L_TOKENIZER_ID"),)),
        Tokenizer(
            (("library/strategy_flux.py", "T5_XXL_TOKENIZER_ID"),),
            files=(("spiece.model", "tokenizer.json"),),
            extras=(),
        ),
    ),
}


def tokenizer_repo(sd_root: Path, tokenizer: Tokenizer) -> str | None:
    """The repo id the installed sd-scripts passes for `tokenizer`, read from its source; None when it
    names none of them (a stand-in, or a layout this kohya-wrap does not know)."""
    for relative_path, constant in tokenizer.sources:
        try:
            text = (sd_root / relative_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        found = re.search(rf"(?m)^{constant}\s*=\s*[\"']([^\"']+)[\"']", text)
        if found:
            return found.group(1)
    return None


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUTHY


def hub_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


def resolves(host: str, timeout: float = LOOKUP_TIMEOUT_S) -> bool:
    """Whether `host` has an address, asked in a daemon thread that is given up on after `timeout`."""
    answer: list[bool] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
            answer.append(True)
        except (OSError, UnicodeError):
            answer.append(False)

    thread = threading.Thread(target=lookup, name="kohya-wrap-hub-lookup", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


@dataclass
class Network:
    """Whether sd-scripts could reach the hub, worked out once and only when asked."""

    _answer: tuple[bool, str] | None = None

    def offline_mode(self) -> bool:
        return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")

    def unreachable(self) -> str | None:
        """None when the hub looks reachable, else why not."""
        if self._answer is None:
            if self.offline_mode():
                self._answer = (False, "HF_HUB_OFFLINE is set")
            else:
                host = hub_host()
                proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
                target = urlparse(proxy).hostname if proxy else None
                ok = resolves(target or host)
                reason = f"{target or host} cannot be resolved (no network?)"
                self._answer = (ok, reason if not ok else "")
        ok, reason = self._answer
        return None if ok else reason


def cached_in_hub(repo: str, filename: str, absent_counts: bool = False) -> bool:
    """Whether the Hugging Face cache holds `filename` of `repo` (never the network); with `absent_counts`
    also when the cache recorded that the repo has no such file."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, filename, cache_dir=hub_cache_dir())
    except Exception:  # noqa: BLE001 - an unreadable or odd cache is no cache
        return False
    return isinstance(found, str) or (absent_counts and found is not None)


def _transformers_asks_hub_first(version: str | None) -> bool:
    """transformers 4.54–4.55 list a tokenizer repo's chat templates on the hub before reading the cache
    and crash on requests' ConnectionError unless HF_HUB_OFFLINE is set (huggingface/transformers#39873,
    fixed in 4.56); sd-scripts v0.10.1 pins 4.54.1."""
    found = re.match(r"(\d+)\.(\d+)", version or "")
    return bool(found) and (4, 54) <= (int(found.group(1)), int(found.group(2))) < (4, 56)


def _names(groups: Iterable[tuple[str, ...]]) -> str:
    return ", ".join(" or ".join(group) for group in groups)


def _make_it(repo: str, tokenizer: Tokenizer, folder: str) -> str:
    """The command that fetches a tokenizer where the hub is reachable: into sd-scripts' tokenizer_cache_dir
    layout (one folder, files at its top), or, for a tokenizer in a repo's subfolder, into the Hugging Face
    cache."""
    names = [group[0] for group in tokenizer.groups]
    if tokenizer.subfolder:
        files = " ".join(f"{tokenizer.subfolder}/{name}" for name in names)
        return f"`hf download {repo} {files}` (into the Hugging Face cache)"
    return f"`hf download {repo} {' '.join(names)} --local-dir DIR/{folder}`"


def tokenizer_checks(
    sd: SdScripts, settings: Settings, transformers: str | None, network: Network | None = None
) -> list[Finding]:
    """Each tokenizer the family's training script loads at start-up (TOKENIZERS): from
    `tokenizer_cache_dir/<owner>_<repo>/` when that folder exists (library/strategy_base.py
    `_load_tokenizer`), else `from_pretrained(repo)`: the Hugging Face cache, else the hub."""
    network = network or Network()
    found: list[Finding] = []
    cache_dir = settings.tokenizer_cache_dir
    where = "training.tokenizer_cache_dir"
    for tokenizer in TOKENIZERS.get(settings.family, ()):
        repo = tokenizer_repo(sd.root, tokenizer)
        if repo is None:
            continue
        folder = repo.replace("/", "_")
        if cache_dir is not None and (cache_dir / folder).exists():
            local = cache_dir / folder
            missing = [group for group in tokenizer.groups if not any((local / name).is_file() for name in group)]
            if missing:
                found.append(
                    Finding(
                        where,
                        f"{local} exists, so sd-scripts loads the tokenizer {repo} from it, but it lacks "
                        f"{_names(missing)}",
                        f"copy the whole tokenizer there ({_make_it(repo, tokenizer, folder)} where {hub_host()} is "
                        "reachable), or delete the folder: sd-scripts then downloads the tokenizer and saves it there",
                        "error",
                    )
                )
            continue
        prefix = f"{tokenizer.subfolder}/" if tokenizer.subfolder else ""
        in_hub = all(any(cached_in_hub(repo, prefix + name) for name in group) for group in tokenizer.files) and all(
            cached_in_hub(repo, prefix + name, absent_counts=True) for name in tokenizer.extras
        )
        keep = (
            f'set {where} = "DIR" to a folder holding {folder}/ with {_names(tokenizer.groups)} (sd-scripts\' layout; '
            f"{_make_it(repo, tokenizer, folder)} makes it where {hub_host()} is reachable)"
        )
        if in_hub:
            if not network.offline_mode() and _transformers_asks_hub_first(transformers):
                reason = network.unreachable()
                if reason:
                    found.append(
                        Finding(
                            where,
                            f"the tokenizer {repo} is in the Hugging Face cache, but {reason} and HF_HUB_OFFLINE is "
                            f"not set: transformers {transformers} in sd-scripts' venv asks the hub before its cache "
                            "and fails",
                            f"export HF_HUB_OFFLINE=1 before `kohya-wrap run`, or {keep}",
                            "error",
                        )
                    )
            continue
        looked = (f"{cache_dir / folder}/ or " if cache_dir is not None else "") + (
            f"the Hugging Face cache ({hub_cache_dir()})"
        )
        reason = network.unreachable()
        if reason:
            found.append(
                Finding(
                    where,
                    f"sd-scripts loads the tokenizer {repo} from the Hugging Face hub at start-up: it is not in "
                    f"{looked}, and {reason}",
                    keep,
                    "error",
                )
            )
        else:
            found.append(
                Finding(
                    where,
                    f"sd-scripts downloads the tokenizer {repo} from {hub_host()} at start-up (it is not in {looked})",
                    "" if cache_dir is not None else f"to train offline later, {keep}",
                    "info",
                )
            )
    return found


def base_model_checks(spec: ProjectSpec, network: Network | None = None) -> list[Finding]:
    """An hf:// base model (a whole repo, loaded with diffusers' from_pretrained) that is not cached, with
    the hub unreachable though HF_HUB_OFFLINE is not set (modelref reports the HF_HUB_OFFLINE case, and an
    hf:// file, itself; a cached repo loads offline without HF_HUB_OFFLINE)."""
    network = network or Network()
    if not spec.model.base:
        return []
    ref = parse_model_ref(spec.model.base)
    if not ref.is_hub or ref.hub_file or ref.hub_repo is None or network.offline_mode():
        return []
    if cached_in_hub(ref.hub_repo, "model_index.json"):
        return []
    reason = network.unreachable()
    if not reason:
        return []
    return [
        Finding(
            "model.base",
            f"{spec.model.base} is not in the Hugging Face cache and {reason}: sd-scripts would fail to download it",
            f"run `hf download {ref.hub_repo}` where {hub_host()} is reachable (the Hugging Face cache), or set "
            "model.base to a local model",
            "error",
        )
    ]
