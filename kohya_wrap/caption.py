"""`caption`: a sidecar caption for every training image, from BLIP (a sentence, through transformers)
or a WD14 booru tagger (tags, an ONNX model run by onnxruntime).

Models come from a local folder or the Hugging Face hub through huggingface_hub's cache (the one a
user's other tools already fill), never blocking on the network: offline and not cached is an
immediate error naming the model and how to point at a local copy. torch, transformers and
onnxruntime are imported only here, only when captioning runs.
"""

from __future__ import annotations

import csv
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from kohya_wrap.dataset.scan import scan_folder
from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.fsutil import dataset_lock, write_text_atomic
from kohya_wrap.spec.load import LoadedSpec
from kohya_wrap.workers import Progress, cpu_count, no_progress

BLIP_DEFAULT = "Salesforce/blip-image-captioning-large"
WD14_DEFAULT = "SmilingWolf/wd-swinv2-tagger-v3"
MODEL_ENV = {"blip": "KOHYA_WRAP_BLIP_MODEL", "wd14": "KOHYA_WRAP_WD14_MODEL"}
MODEL_FILES = {  # what each kind needs from a hub repo (nothing else is downloaded)
    "blip": [
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "processor_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "model.safetensors",
    ],
    "wd14": ["model.onnx", "selected_tags.csv"],
}
REQUIRED = {"blip": ["config.json", "model.safetensors"], "wd14": ["model.onnx", "selected_tags.csv"]}
RATING, GENERAL, CHARACTER = 9, 0, 4  # selected_tags.csv categories
_TWO_LETTERS = re.compile(r"[A-Za-z]{2}")


# ---------------------------------------------------------------------------------------------- models


def model_reference(kind: str, given: str | None) -> str:
    return given or os.environ.get(MODEL_ENV[kind]) or (BLIP_DEFAULT if kind == "blip" else WD14_DEFAULT)


def locate_model(kind: str, reference: str) -> Path:
    """A local model folder, or a hub repo id resolved through the Hugging Face cache (downloaded
    there when the hub is reachable). Fails fast, with what to do, when it cannot be had."""
    hint = (
        f"download it where the hub is reachable (`hf download {reference}`), or point --model-path / "
        f"{MODEL_ENV[kind]} at a local copy (a folder with {', '.join(REQUIRED[kind])})"
    )
    path = Path(reference).expanduser()
    looks_local = path.is_absolute() or reference.startswith((".", "~")) or path.exists() or reference.count("/") != 1
    if looks_local:
        if not path.is_dir():
            raise KohyaWrapError(f"caption model {reference}: no such folder", hint)
        missing = [name for name in REQUIRED[kind] if not (path / name).is_file()]
        if missing:
            raise KohyaWrapError(
                f"caption model {path}: missing {', '.join(missing)}",
                f"a {kind} model folder needs {', '.join(REQUIRED[kind])}",
            )
        return path
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(reference, allow_patterns=MODEL_FILES[kind]))
    except Exception as exc:  # noqa: BLE001 - offline, not found, no network: all the same to the user
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        why = (
            "not in the Hugging Face cache and HF_HUB_OFFLINE is set"
            if offline
            else f"not in the Hugging Face cache and the hub could not be reached ({type(exc).__name__})"
        )
        raise KohyaWrapError(f"caption model {reference}: {why}", hint) from None
    missing = [name for name in REQUIRED[kind] if not (folder / name).is_file()]
    if missing:
        raise KohyaWrapError(
            f"caption model {reference}: the repo has no {', '.join(missing)}",
            f"use a {kind} model repo, or --model-path with a local copy",
        )
    return folder


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise KohyaWrapError("--device cuda: torch sees no CUDA GPU here", "use --device cpu (or auto)")
    return requested


@dataclass
class BlipOptions:
    beams: int = 3
    top_p: float | None = None  # nucleus sampling instead of beam search
    min_length: int = 5
    max_length: int = 75
    device: str = "auto"


class BlipCaptioner:
    """BlipForConditionalGeneration + BlipProcessor, batched, in inference mode (fp16 on CUDA)."""

    kind = "blip"

    def __init__(self, folder: Path, options: BlipOptions) -> None:
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.torch, self.options = torch, options
        self.device = pick_device(options.device)
        if self.device == "cpu":
            torch.set_num_threads(cpu_count())
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        self.processor = BlipProcessor.from_pretrained(folder)
        self.model = BlipForConditionalGeneration.from_pretrained(folder, dtype=dtype).to(self.device).eval()
        self.dtype = dtype

    def __call__(self, images: list) -> list[str]:
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        kwargs = {"max_length": self.options.max_length, "min_length": self.options.min_length}
        if self.options.top_p is not None:
            kwargs.update(do_sample=True, top_p=self.options.top_p, num_beams=1)
        else:
            kwargs.update(num_beams=self.options.beams, do_sample=False)
        with self.torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs)
        return [" ".join(text.split()) for text in self.processor.batch_decode(output, skip_special_tokens=True)]


@dataclass
class TaggerOptions:
    general_threshold: float = 0.35
    character_threshold: float = 0.85
    exclude: frozenset[str] = frozenset()
    keep_underscores: bool = False
    rating: bool = False
    device: str = "auto"


def tag_text(name: str, keep_underscores: bool) -> str:
    """blue_eyes → blue eyes; kaomoji such as ^_^ or o_o (no two letters in a row) keep theirs."""
    return name if keep_underscores or not _TWO_LETTERS.search(name) else name.replace("_", " ")


class Wd14Tagger:
    """A WD14-style tagger: model.onnx (NHWC, BGR, 0–255, square, white padding) + selected_tags.csv."""

    kind = "wd14"

    def __init__(self, folder: Path, options: TaggerOptions) -> None:
        import onnxruntime as ort

        self.options = options
        settings = ort.SessionOptions()
        settings.intra_op_num_threads = cpu_count()
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if options.device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        elif options.device == "cuda":
            raise KohyaWrapError(
                "--device cuda: this onnxruntime has no CUDA provider",
                "pip install onnxruntime-gpu, or use --device cpu",
            )
        self.session = ort.InferenceSession(str(folder / "model.onnx"), sess_options=settings, providers=providers)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.size = int(model_input.shape[1]) if isinstance(model_input.shape[1], int) else 448
        self.tags: list[tuple[str, int]] = []
        with open(folder / "selected_tags.csv", encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                self.tags.append((row["name"], int(row["category"])))

    def _array(self, image):
        import numpy as np
        from PIL import Image

        side = max(image.size)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        canvas = canvas.resize((self.size, self.size), Image.Resampling.BICUBIC)
        return np.asarray(canvas, dtype=np.float32)[:, :, ::-1]  # RGB → BGR, 0–255 as the models expect

    def scores(self, images: list):
        import numpy as np

        batch = np.ascontiguousarray(np.stack([self._array(image) for image in images]))
        return self.session.run(None, {self.input_name: batch})[0]

    def __call__(self, images: list) -> list[str]:
        options = self.options
        captions = []
        for row in self.scores(images):
            character, general, rating = [], [], []
            for (name, category), score in zip(self.tags, row, strict=False):
                text = tag_text(name, options.keep_underscores)
                if text in options.exclude or name in options.exclude:
                    continue
                if category == CHARACTER and score >= options.character_threshold:
                    character.append((float(score), text))
                elif category == GENERAL and score >= options.general_threshold:
                    general.append((float(score), text))
                elif category == RATING:
                    rating.append((float(score), text))
            ordered = [t for _, t in sorted(character, key=lambda st: -st[0])] + [
                t for _, t in sorted(general, key=lambda st: -st[0])
            ]
            if options.rating and rating:
                ordered.append(max(rating)[1])
            captions.append(", ".join(ordered))
        return captions


# ---------------------------------------------------------------------------------------------- running


@dataclass
class CaptionJob:
    image: Path
    caption: Path
    prefix: str = ""
    suffix: str = ""
    existing: str | None = None  # the current caption, for --append


@dataclass
class CaptionReport:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def compose(job: CaptionJob, generated: str) -> str:
    """prefix (the trigger word) first, then the caption's comma-separated items, then the suffix;
    with --append the existing items come before the new ones, and nothing appears twice."""
    new = [item.strip() for item in generated.split(",") if item.strip()]
    items = [item.strip() for item in (job.existing or "").strip().split(",") if item.strip()]
    for item in new:
        if item.lower() not in {i.lower() for i in items}:
            items.append(item)
    ends = [e for e in (job.prefix, job.suffix) if e]
    items = [i for i in items if i.lower() not in {e.lower() for e in ends}]
    return ", ".join(([job.prefix] if job.prefix else []) + items + ([job.suffix] if job.suffix else []))


@dataclass
class ConceptJobs:
    """One concept's captioning work: the images to caption, and those left alone."""

    label: str
    folder: Path
    jobs: list[CaptionJob]
    skipped: int  # already captioned
    unreadable: list[Path]  # existing captions (for --append) that are not UTF-8


@dataclass(frozen=True)
class JobOptions:
    concept: str | None = None  # only this concept (default: every training concept)
    prefix: str | None = None  # default: the concept's trigger token
    no_prefix: bool = False
    suffix: str = ""
    overwrite: bool = False
    append: bool = False


def plan_jobs(loaded: LoadedSpec, options: JobOptions) -> list[ConceptJobs]:
    """What to caption: every image of the chosen concepts without a caption (all of them with
    `overwrite` or `append`), in the concept's own caption extension."""
    if options.overwrite and options.append:
        raise KohyaWrapError(
            "--overwrite and --append: choose one", "--overwrite replaces captions, --append adds to them"
        )
    plan = []
    for item in loaded.settings.select_concepts(options.concept, loaded.layout.spec_file, training_only=True):
        scan = scan_folder(item.folder, read_sizes=False)
        if not scan.exists:
            raise KohyaWrapError(
                f"{item.folder}: concept {item.label!r} has no image folder yet",
                "run `kohya-wrap prep` (or `init --images`) first",
            )
        lead = "" if options.no_prefix else options.prefix if options.prefix is not None else item.concept.token
        jobs, skipped, unreadable = [], 0, []
        for image in scan.images:
            target = Path(image.stem_path + item.caption_extension)
            existing = None
            if target.exists():
                if not (options.overwrite or options.append):
                    skipped += 1
                    continue
                if options.append:
                    try:
                        existing = target.read_bytes().decode("utf-8").lstrip("\ufeff")
                    except UnicodeDecodeError:
                        unreadable.append(target)
                        continue
            jobs.append(CaptionJob(image.path, target, lead, options.suffix, existing))
        plan.append(ConceptJobs(item.label, item.folder, jobs, skipped, unreadable))
    return plan


def load_captioner(kind: str, folder: Path, blip: BlipOptions, tagger: TaggerOptions):
    """The BLIP captioner or WD14 tagger from a model folder; a missing library is named with the fix."""
    try:
        return BlipCaptioner(folder, blip) if kind == "blip" else Wd14Tagger(folder, tagger)
    except ImportError as exc:
        needs = "torch and transformers" if kind == "blip" else "onnxruntime and numpy"
        raise KohyaWrapError(
            f"caption --model {kind} needs {needs} ({exc.name or exc} is not installed)",
            "pip install 'kohya-wrap[caption]'",
        ) from None


def load_image(path: Path):
    """RGB, upright, transparency on white: how the captioner should see the training image."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            canvas = Image.new("RGB", rgba.size, (255, 255, 255))
            canvas.paste(rgba, mask=rgba.getchannel("A"))
            return canvas
        return image.convert("RGB")


def _batches(jobs: list[CaptionJob], size: int) -> Iterator[list[CaptionJob]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def run_captioner(
    captioner: Callable[[list], list[str]],
    jobs: list[CaptionJob],
    batch_size: int,
    on_done: Callable[[int], None] | None = None,
) -> CaptionReport:
    """Caption in batches; the next batch's images are decoded on another thread while the model runs.
    Each caption is written (atomically) as soon as its batch is done, so an interruption keeps them."""
    report = CaptionReport()

    def load(batch: list[CaptionJob]):
        images, ok = [], []
        for job in batch:
            try:
                images.append(load_image(job.image))
                ok.append(job)
            except Exception as exc:  # noqa: BLE001 - one unreadable image must not stop the others
                report.failed.append((job.image, f"unreadable: {exc}"))
        return ok, images

    batches: Iterable[list[CaptionJob]] = _batches(jobs, batch_size)
    with ThreadPoolExecutor(1) as loader:
        pending = None
        for batch in batches:
            future = loader.submit(load, batch)
            if pending is not None:
                _finish(captioner, pending.result(), report, write_text_atomic, on_done)
            pending = future
        if pending is not None:
            _finish(captioner, pending.result(), report, write_text_atomic, on_done)
    return report


def _finish(captioner, loaded, report: CaptionReport, write, on_done) -> None:
    jobs, images = loaded
    if not jobs:
        return
    texts = captioner(images)
    for job, text in zip(jobs, texts, strict=True):
        write(job.caption, compose(job, text) + "\n")
        report.written.append(job.caption)
    if on_done:
        on_done(len(jobs))


@dataclass
class ConceptCaptioned:
    jobs: ConceptJobs
    report: CaptionReport
    seconds: float


def caption_project(
    loaded: LoadedSpec,
    plan: list[ConceptJobs],
    captioner: Callable[[list], list[str]] | None,
    batch_size: int,
    progress: Progress = no_progress,
) -> list[ConceptCaptioned]:
    """Run the planned jobs concept by concept (holding the project's dataset lock)."""
    results = []
    with dataset_lock(loaded.layout.root, "caption"):
        for concept in plan:
            started = time.monotonic()
            report = CaptionReport()
            if concept.jobs:
                assert captioner is not None
                with progress(concept.label, len(concept.jobs)) as bar:
                    report = run_captioner(captioner, concept.jobs, batch_size, on_done=lambda n: bar.advance(count=n))
            results.append(ConceptCaptioned(concept, report, time.monotonic() - started))
    return results
