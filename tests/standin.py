"""A stand-in sd-scripts: a local git repository with two tagged versions whose training scripts build
argparse parsers the way sd-scripts does (`setup_parser()` in each script, shared options in
`library/train_util.py`, dataset_config keys in `library/config_util.py`), standard library only.

v1.0.0 → v1.1.0: `--network_dropout` added, `--use_8bit_adam` removed, `--lr_scheduler` default
changed, `--mixed_precision` choices extended, `flux_train_network.py` added, requirements.txt changed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

TRAIN_UTIL = """\
import argparse


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretrained_model_name_or_path", type=str, default=None)
    parser.add_argument("--tokenizer_cache_dir", type=str, default=None)
    parser.add_argument("--output_dir", type=str, default=None)
    parser.add_argument("--output_name", type=str, default=None)
    parser.add_argument("--logging_dir", type=str, default=None)
    parser.add_argument("--resolution", type=str, default=None)
    parser.add_argument("--train_batch_size", type=int, default=1)
    parser.add_argument("--max_train_steps", type=int, default=1600)
    parser.add_argument("--max_train_epochs", type=int, default=None)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=2e-6)
    parser.add_argument("--lr_scheduler", type=str, default="{lr_scheduler}")
    parser.add_argument("--lr_warmup_steps", type=int, default=0)
    parser.add_argument("--optimizer_type", type=str, default="")
    parser.add_argument("--mixed_precision", type=str, default="no", choices={precisions})
    parser.add_argument("--save_precision", type=str, default=None, choices=[None, "float", "fp16", "bf16"])
    parser.add_argument("--save_model_as", type=str, default="safetensors", choices=[None, "ckpt", "pt", "safetensors"])
    parser.add_argument("--save_every_n_epochs", type=int, default=None)
    parser.add_argument("--save_every_n_steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--sdpa", action="store_true")
    parser.add_argument("--xformers", action="store_true")
    parser.add_argument("--cache_latents", action="store_true")
    parser.add_argument("--cache_latents_to_disk", action="store_true")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--max_data_loader_n_workers", type=int, default=8)
    parser.add_argument("--sample_prompts", type=str, default=None)
    parser.add_argument("--sample_every_n_epochs", type=int, default=None)
    parser.add_argument("--sample_sampler", type=str, default="ddim", choices=["ddim", "euler", "euler_a"])
    parser.add_argument("--enable_bucket", action="store_true")
    parser.add_argument("--min_bucket_reso", type=int, default=256)
    parser.add_argument("--max_bucket_reso", type=int, default=1024)
    parser.add_argument("--bucket_reso_steps", type=int, default=64)
    parser.add_argument("--bucket_no_upscale", action="store_true")
    parser.add_argument("--caption_extension", type=str, default=".caption")
{extra}
"""

CONFIG_UTIL = """\
class ConfigSanitizer:
    def __init__(self, support_dreambooth, support_finetuning, support_controlnet, support_dropout):
        subset = {"image_dir": str, "num_repeats": int, "class_tokens": str, "is_reg": bool,
                  "caption_extension": str, "keep_tokens": int, "flip_aug": bool, "shuffle_caption": bool}
        self.db_subset_schema = subset
        self.db_dataset_schema = {"resolution": int, "batch_size": int, "enable_bucket": bool,
                                  "min_bucket_reso": int, "max_bucket_reso": int, "bucket_reso_steps": int,
                                  "bucket_no_upscale": bool, "subsets": [subset]}
        self.general_schema = {**{k: v for k, v in subset.items() if k != "image_dir"},
                               **{k: v for k, v in self.db_dataset_schema.items() if k != "subsets"}}
"""

TRAIN_NETWORK = """\
import argparse

from library import train_util


def setup_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    train_util.add_training_arguments(parser)
    parser.add_argument("--network_module", type=str, default=None)
    parser.add_argument("--network_dim", type=int, default=None)
    parser.add_argument("--network_alpha", type=float, default=1)
    parser.add_argument("--network_args", type=str, default=None, nargs="*")
    parser.add_argument("--unet_lr", type=float, default=None)
    parser.add_argument("--text_encoder_lr", type=float, default=None, nargs="*")
{extra}
    return parser


if __name__ == "__main__":
    print("stand-in sd-scripts", setup_parser().parse_args())
"""

SUBSCRIPT = """\
import train_network


def setup_parser():
    parser = train_network.setup_parser()
    parser.add_argument("--cache_text_encoder_outputs", action="store_true")
{extra}
    return parser
"""

VERSIONS = {
    "v1.0.0": {
        "lr_scheduler": "constant",
        "precisions": '["no", "fp16", "bf16"]',
        "train_util_extra": '    parser.add_argument("--use_8bit_adam", action="store_true")',
        "network_extra": "",
        "flux": False,
        "requirements": "# stand-in: nothing to install\n",
    },
    "v1.1.0": {
        "lr_scheduler": "cosine",
        "precisions": '["no", "fp16", "bf16", "fp8"]',
        "train_util_extra": "",
        "network_extra": '    parser.add_argument("--network_dropout", type=float, default=None)',
        "flux": True,
        "requirements": "# stand-in: nothing to install (v1.1.0)\n",
    },
}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
            "HOME": str(repo),
            "PATH": "/usr/bin:/bin:/usr/local/bin",
        },
    )


def build_standin_repo(repo: Path) -> Path:
    """Create the repository with tags v1.0.0 and v1.1.0, v1.2.0 whose train_network.py cannot be
    imported (a dependency its venv lacks), and v1.3.0, v1.4.0 whose packages need NumPy 1 (see
    add_numpy1_tags); returns its path."""
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    for tag, version in VERSIONS.items():
        (repo / "library").mkdir(exist_ok=True)
        (repo / "library" / "__init__.py").write_text("", encoding="utf-8")
        (repo / "library" / "train_util.py").write_text(
            TRAIN_UTIL.format(
                lr_scheduler=version["lr_scheduler"],
                precisions=version["precisions"],
                extra=version["train_util_extra"],
            ),
            encoding="utf-8",
        )
        (repo / "library" / "config_util.py").write_text(CONFIG_UTIL, encoding="utf-8")
        (repo / "train_network.py").write_text(TRAIN_NETWORK.format(extra=version["network_extra"]), encoding="utf-8")
        (repo / "sdxl_train_network.py").write_text(SUBSCRIPT.format(extra=""), encoding="utf-8")
        if version["flux"]:
            (repo / "flux_train_network.py").write_text(
                SUBSCRIPT.format(extra='    parser.add_argument("--t5xxl", type=str, default=None)'), encoding="utf-8"
            )
        (repo / "requirements.txt").write_text(version["requirements"], encoding="utf-8")
        (repo / "bitsandbytes_windows").mkdir(exist_ok=True)
        (repo / "bitsandbytes_windows" / "libbitsandbytes_cuda118.dll").write_bytes(b"windows only")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"stand-in {tag}")
        _git(repo, "tag", tag)
    script = repo / "train_network.py"
    script.write_text("import a_module_the_venv_lacks\n" + script.read_text(encoding="utf-8"), encoding="utf-8")
    _git(repo, "commit", "-qam", "stand-in v1.2.0: needs a new dependency")
    _git(repo, "tag", "v1.2.0")
    add_numpy1_tags(repo)
    return repo


# ----------------------------------------------------------------------------- releases built against NumPy 1
# v1.3.0 pins opencv-python 4.8.1.78 (a release kohya-wrap's table knows needs numpy<2), v1.4.0 a package the
# table does not know. Their requirements install hand-made pure-Python wheels from the checkout (--no-index:
# fast, offline): a `numpy` 1.26.4 and 2.4.6, and packages that fail to import under "NumPy 2" with NumPy's
# own message, as the real opencv-python 4.8 does.

NUMPY1_BUILT = """\
import numpy

if int(numpy.__version__.split(".")[0]) >= 2:
    raise ImportError("numpy.core.multiarray failed to import")
"""

NUMPY1_TAGS = {
    "v1.3.0": ("cv2", "--no-index\n--find-links wheels\nopencv-python==4.8.1.78\n"),
    "v1.4.0": ("standin_ext", "--no-index\n--find-links wheels\nstandin-ext==1.0\n"),
}


def write_wheel(folder: Path, name: str, version: str, files: dict[str, str], requires: str = "") -> Path:
    """A pure-Python wheel written by hand: no build backend, no network."""
    import base64
    import hashlib
    import zipfile

    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    contents = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + (f"Requires-Dist: {requires}\n" if requires else ""),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: standin\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    contents[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0)), text)
    return wheel


def add_numpy1_tags(repo: Path) -> None:
    wheels = repo / "wheels"
    for version in ("1.26.4", "2.4.6"):
        write_wheel(wheels, "numpy", version, {"numpy/__init__.py": f'__version__ = "{version}"\n'})
    write_wheel(wheels, "opencv-python", "4.8.1.78", {"cv2/__init__.py": NUMPY1_BUILT}, "numpy")
    write_wheel(wheels, "standin-ext", "1.0", {"standin_ext/__init__.py": NUMPY1_BUILT}, "numpy")
    script = TRAIN_NETWORK.format(extra=VERSIONS["v1.1.0"]["network_extra"])
    for tag, (module, requirements) in NUMPY1_TAGS.items():
        (repo / "train_network.py").write_text(f"import {module}  # noqa: F401\n" + script, encoding="utf-8")
        (repo / "requirements.txt").write_text(requirements, encoding="utf-8")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"stand-in {tag}: built against NumPy 1")
        _git(repo, "tag", tag)
