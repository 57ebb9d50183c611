"""A failed run's cause and fix, from what sd-scripts printed: its exception and its error lines are
matched against known failures, so the user reads what happened and what to do instead of the last raw
exception line.

Each diagnosis matches lower-cased needles in the exception line and the error log lines, in order (the
first that matches wins); it may read details (the hub repo, the missing module, the memory asked for)
from those and from `context`, the other lines of the traceback where the caller has them. Needles
never match the context: a traceback passes through many modules' paths."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, Sequence

# Hub repos sd-scripts v0.10.1 loads at start-up (library/strategy_*.py), and what each is.
HUB_TOKENIZERS = {
    "openai/clip-vit-large-patch14": "the CLIP tokenizer sd-scripts loads for SD 1.x, SDXL and FLUX",
    "stabilityai/stable-diffusion-2": "the tokenizer sd-scripts loads for SD 2.x",
    "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k": "SDXL's second tokenizer",
    "google/t5-v1_1-xxl": "FLUX's T5 tokenizer",
}
# import name → pip name, where they differ (sd-scripts' requirements.txt)
PIP_NAMES = {
    "cv2": "opencv-python",
    "PIL": "pillow",
    "lion_pytorch": "lion-pytorch",
    "lycoris": "lycoris-lora",
    "prodigyplus": "prodigy-plus-schedule-free",
    "google": "protobuf",
    "yaml": "pyyaml",
}
_REPO_IN_URL = re.compile(
    r"(?:/api/models/|huggingface\.co/|hf\.co/|with url: /)([\w.-]+/[\w.-]+)/(?:resolve|tree|revision)/"
)
_REPO_QUOTED = re.compile(r"(?:load tokenizer for|repo_id=|repo id)\s*'?([\w.-]+/[\w.-]+)")
_HOST = re.compile(r"(?:Failed to resolve|host=)\s*'([\w.-]+)'")
_OFFLINE_NEEDLES = (
    "hf_hub_offline",
    "offlinemodeisenabled",
    "localentrynotfound",
    "outgoing traffic has been disabled",
)
_NETWORK_NEEDLES = (
    "nameresolution",
    "failed to resolve",
    "max retries exceeded",
    "connectionerror",
    "connecttimeout",
    "we couldn't connect to",
    "network is unreachable",
)
_MODULE = re.compile(r"No module named '([\w.]+)'")
_ALLOCATE = re.compile(r"Tried to allocate ([\d.]+ [KMGT]i?B)", re.IGNORECASE)
_CAPACITY = re.compile(r"total capacity of ([\d.]+ [KMGT]i?B)", re.IGNORECASE)


@dataclass(frozen=True)
class Facts:
    """What the failure printed: `text` the exception line and error lines, `context` those plus the
    rest of the traceback."""

    text: str
    context: str

    def find(self, pattern: re.Pattern[str]) -> str | None:
        for source in (self.text, self.context):
            found = pattern.search(source)
            if found:
                return found.group(1)
        return None


@dataclass(frozen=True)
class Diagnosis:
    needles: tuple[str, ...]  # lower-case; any of them in the exception or error lines
    what: str | Callable[[Facts], str]  # what happened
    fix: str | Callable[[Facts], str]  # what to do
    when: Callable[[Facts], bool] | None = None  # an extra condition on top of a needle

    def matches(self, facts: Facts) -> bool:
        lowered = facts.text.lower()
        return any(n in lowered for n in self.needles) and (self.when is None or self.when(facts))


def _offline_env() -> bool:
    """HF_HUB_OFFLINE as sd-scripts saw it: it runs with kohya-wrap's environment."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_what(facts: Facts) -> str:
    repo = facts.find(_REPO_IN_URL) or facts.find(_REPO_QUOTED)
    host = facts.find(_HOST) or "huggingface.co"
    if repo:
        thing = f"{repo} ({HUB_TOKENIZERS[repo]})" if repo in HUB_TOKENIZERS else repo
    else:
        thing = (
            "a file (at start-up: the family's tokenizer, e.g. openai/clip-vit-large-patch14 for SD 1.x and SDXL, "
            "or an hf:// base model not yet cached)"
        )
    text = facts.text.lower()
    offline = any(n in text for n in _OFFLINE_NEEDLES)
    network = any(n in text for n in _NETWORK_NEEDLES)
    if offline or (_offline_env() and not network):
        return (
            f"sd-scripts needed {thing} from the Hugging Face hub; it is not in the Hugging Face cache and "
            "HF_HUB_OFFLINE is set"
        )
    if network:
        return f"sd-scripts tried to download {thing} from the Hugging Face hub ({host}) and could not reach it"
    return f"sd-scripts could not load {thing} from the Hugging Face hub or its cache"


def _hub_fix(facts: Facts) -> str:
    repo = facts.find(_REPO_IN_URL) or facts.find(_REPO_QUOTED)
    if repo and repo not in HUB_TOKENIZERS:
        return (
            f"download it where the hub is reachable (`hf download {repo}`, into the Hugging Face cache), or use a "
            "local file; `kohya-wrap check` names each hub file a run needs"
        )
    folder = (repo or "openai/clip-vit-large-patch14").replace("/", "_")
    return (
        f"set training.tokenizer_cache_dir to a folder holding {folder}/ (sd-scripts' layout; it saves the tokenizer "
        "there after one run that reaches the hub), or export HF_HUB_OFFLINE=1 if it is in the Hugging Face cache; "
        "`kohya-wrap check` names each hub file a run needs and where it looked"
    )


def _tokenizer_file_missing(facts: Facts) -> bool:
    """transformers hands the tokenizer None for a file it could not get offline: `open(None)`."""
    return _offline_env() or "tokenization_" in facts.context or "from_pretrained" in facts.context


def _module_what(facts: Facts) -> str:
    module = facts.find(_MODULE)
    return f"sd-scripts' venv lacks the Python module '{module}'" if module else "a Python module is missing"


def _module_fix(facts: Facts) -> str:
    module = facts.find(_MODULE)
    if module is None:
        return "reinstall sd-scripts' venv: `kohya-wrap vendor install` (or pip install the module named in the log)"
    top = module.split(".")[0]
    if top in ("networks", "lycoris"):
        return (
            f"check training.network_module ({module}); for LyCORIS install it into sd-scripts' venv "
            "(`python -m pip install lycoris-lora` with that venv's python)"
        )
    return (
        f"install it into sd-scripts' venv (`python -m pip install {PIP_NAMES.get(top, top)}` with that venv's "
        "python), or reinstall it with `kohya-wrap vendor install`"
    )


def _oom_what(facts: Facts) -> str:
    asked, total = facts.find(_ALLOCATE), facts.find(_CAPACITY)
    detail = f" (it asked for {asked}" + (f" of a {total} GPU)" if total else ")") if asked else ""
    return f"the GPU ran out of memory{detail}"


DIAGNOSES: list[Diagnosis] = [
    Diagnosis(
        ("neither a valid local path nor a valid repo id",),
        "the base model was not found",
        "fix model.base, or download it while online",
    ),
    Diagnosis(
        ("defaultcpuallocator: not enough memory", "cannot allocate memory"),
        "the machine ran out of memory (RAM)",
        "close other programs, or lighten the run: train_batch_size = 1, max_data_loader_n_workers = 0, "
        "cache_latents_to_disk = true",
    ),
    Diagnosis(
        ("out of memory", "outofmemoryerror", "cublas_status_alloc_failed"),
        _oom_what,
        "lighter settings: gradient_checkpointing = true, cache_latents = true, train_batch_size = 1, optimizer_type "
        '= "AdamW8bit", or the sdxl-low-vram preset',
    ),
    Diagnosis(
        (
            "expected m1 and m2 to have the same dtype",
            "half != float",
            "float != c10::half",
            "not implemented for 'half'",
            "expected scalar type half",
            "input type (c10::half) and bias type",
            "fp16 mixed precision requires a gpu",
        ),
        'fp16 and fp32 tensors met: mixed_precision = "fp16" fails like this on a machine without a CUDA device '
        "(sd-scripts casts the model to fp16, and the CPU cannot compute in it)",
        'without a CUDA device set training.mixed_precision = "no" (or "bf16"); on a GPU try "bf16", or '
        "no_half_vae = true for SDXL; `kohya-wrap check` says which devices sd-scripts' venv sees",
    ),
    Diagnosis(
        ("bf16 mixed precision requires", "bfloat16 is not supported", "cublas_status_not_supported"),
        "this GPU cannot compute in bf16",
        'set training.mixed_precision = "fp16" (bf16 needs an NVIDIA Ampere GPU or newer)',
    ),
    Diagnosis(
        ("no kernel image is available for execution",),
        "sd-scripts' torch was not built for this GPU",
        "install a torch build for this GPU's CUDA version into sd-scripts' venv (`kohya-wrap vendor install`)",
    ),
    Diagnosis(
        (
            "torch not compiled with cuda enabled",
            "found no nvidia driver",
            "no cuda gpus are available",
            "cuda driver initialization failed",
        ),
        "sd-scripts needs a CUDA device here, and its torch has none (a CPU build, or no NVIDIA driver or GPU)",
        "install a CUDA build of torch into sd-scripts' venv on a machine with an NVIDIA GPU, or train on the CPU: "
        'mixed_precision = "no", sdpa = true instead of xformers, optimizer_type = "AdamW"',
    ),
    Diagnosis(
        ("memory_efficient_attention", "xformers"),
        "xformers could not run its attention here (not installed, built for another torch, or no CUDA device)",
        "set training.sdpa = true instead of xformers, or install an xformers built for sd-scripts' torch into its "
        "venv",
    ),
    Diagnosis(
        ("bitsandbytes", "cuda setup failed"),
        "bitsandbytes (the 8-bit optimizers) could not load or run here",
        'set training.optimizer_type = "AdamW", or reinstall bitsandbytes in sd-scripts\' venv '
        "(`python -m pip install -U bitsandbytes` with that venv's python)",
    ),
    Diagnosis(("modulenotfounderror", "no module named"), _module_what, _module_fix),
    Diagnosis(
        (
            "huggingface.co",
            "hf_hub_offline",
            "localentrynotfound",
            "offlinemodeisenabled",
            "outgoing traffic has been disabled",
            "can't load tokenizer for",
            "we couldn't connect to",
            "nameresolutionerror",
        ),
        _hub_what,
        _hub_fix,
    ),
    Diagnosis(
        ("expected str, bytes or os.pathlike object, not nonetype",),
        lambda facts: (
            "a file sd-scripts loads from the Hugging Face hub at start-up (its tokenizer) is not in the Hugging Face "
            "cache and HF_HUB_OFFLINE is set (transformers then opens None)"
        ),
        _hub_fix,
        when=_tokenizer_file_missing,
    ),
    Diagnosis(
        ("no data found",),
        "sd-scripts found no training images",
        "check the concept folders and caption_extension (`kohya-wrap check`)",
    ),
    Diagnosis(
        ("image file is truncated",),
        "an image is truncated or corrupt",
        "re-export or remove the image named in the log",
    ),
    Diagnosis(
        ("cannot identify image file",),
        "a file is not a readable image",
        "re-export or remove the image named in the log",
    ),
    Diagnosis(("no space left on device",), "the disk is full", "free space where the project (model/, log/) lives"),
    Diagnosis(
        ("loss is nan",), "the loss became NaN", 'lower learning_rate, or use mixed_precision = "bf16" instead of fp16'
    ),
]


def diagnose(exception: str | None, errors: list[str], verdict: str, context: Sequence[str] = ()) -> list[str]:
    """[what happened: the exception, fix: what to do], or the raw exception and where the log is, or the
    verdict. `context`: more of what sd-scripts printed (the traceback), read for details only."""
    text = " ".join([exception or "", *errors])
    facts = Facts(text, " ".join([text, *context]))
    for diagnosis in DIAGNOSES:
        if diagnosis.matches(facts):
            what = diagnosis.what(facts) if callable(diagnosis.what) else diagnosis.what
            fix = diagnosis.fix(facts) if callable(diagnosis.fix) else diagnosis.fix
            return [f"{what}: {exception or errors[0]}", f"fix: {fix}"]
    if exception:
        return [f"sd-scripts failed: {exception}", "see train.log in the run folder for the whole traceback"]
    return [verdict]
