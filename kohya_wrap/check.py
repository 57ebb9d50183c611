"""`check`: everything that would make sd-scripts fail or silently train the wrong thing, found before
any model loads: concept folders, stray folders it would skip, unreadable images, caption files, model
references, the output folder, `lint`'s findings about the images and captions themselves, and the
environment sd-scripts would run in (its venv's devices, precision, xformers, bitsandbytes, and the hub
files it downloads at start-up: sdscripts/preflight.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kohya_wrap.dataset.scan import ConceptScan, scan_folder
from kohya_wrap.errors import Finding, Severity
from kohya_wrap.lint import ConceptLint, lint_project
from kohya_wrap.paths import relative
from kohya_wrap.sdscripts.locate import SdScripts, trust_command
from kohya_wrap.sdscripts.modelref import ResolvedRef, resolve_model_refs
from kohya_wrap.sdscripts.preflight import preflight
from kohya_wrap.sdscripts.sd3files import missing_sd3_text_encoders
from kohya_wrap.sdscripts.stepmath import BucketError, BucketSelector
from kohya_wrap.spec.load import LoadedSpec
from kohya_wrap.spec.settings import FOLDER_NAME, Settings

MAX_LISTED = 5  # per problem kind and folder; the rest are counted


@dataclass
class CheckReport:
    loaded: LoadedSpec
    concepts: list[ConceptScan]
    models: list[ResolvedRef]
    findings: list[Finding] = field(default_factory=list)
    lint: list[ConceptLint] = field(default_factory=list)  # per concept: statistics and dataset findings

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    @property
    def sd_scripts(self) -> SdScripts:
        return self.loaded.sd_scripts

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def add(self, severity: Severity, where: str, what: str, fix: str = "") -> None:
        self.findings.append(Finding(where, what, fix, severity))


def _listed(paths: list[Path], root: Path) -> str:
    shown = ", ".join(relative(p, root) for p in paths[:MAX_LISTED])
    more = len(paths) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _check_concept(report: CheckReport, item: ConceptScan) -> None:
    root = report.loaded.layout.root
    where = relative(item.folder, root)
    scan = item.scan
    if not scan.exists:
        report.add(
            "error",
            where,
            "folder does not exist",
            f"create it and add images, or run `kohya-wrap init {root} --images SRC`",
        )
        return
    if scan.skipped:
        report.add(
            "warning",
            where,
            f"{len(scan.skipped)} image file(s) that sd-scripts does not read (it matches extensions "
            f"case-sensitively: .png .jpg .jpeg .webp .bmp or all upper case): {_listed(list(scan.skipped), root)}",
            "rename or convert them, or they are not trained",
        )
    if not scan.images:
        report.add("error", where, "holds no images sd-scripts can read", "add .png/.jpg/.jpeg/.webp/.bmp images")
        return
    unreadable = [image.path for image in scan.images if image.size is None]
    if unreadable:
        report.add(
            "error",
            where,
            f"{len(unreadable)} file(s) are not readable images: {_listed(unreadable, root)}",
            "delete or replace them (sd-scripts crashes on them)",
        )
    damaged = [image for image in scan.images if image.damage]
    if damaged:
        report.add(
            "error",
            where,
            f"{len(damaged)} image(s) are truncated or corrupt ({damaged[0].damage}): "
            f"{_listed([i.path for i in damaged], root)}",
            "re-export or remove them (sd-scripts fails on them only after loading the model)",
        )
    _check_captions(report, item)


def _check_captions(report: CheckReport, item: ConceptScan) -> None:
    root = report.loaded.layout.root
    where = relative(item.folder, root)
    extension = item.concept.caption_extension
    paired = item.scan.captions_with(extension)
    images = item.scan.images
    other_exts: dict[str, int] = {}
    for sidecar in item.scan.sidecars:
        ext = os.path.splitext(sidecar.name)[1]
        if ext != extension:
            other_exts[ext] = other_exts.get(ext, 0) + 1
    if not paired:
        if other_exts:
            ext, count = max(other_exts.items(), key=lambda kv: kv[1])
            report.add(
                "error",
                where,
                f'caption_extension is "{extension}" but the captions here are {count} "{ext}" file(s)',
                f'set dataset.caption_extension = "{ext}" (or rename the files)',
            )
        else:
            report.add(
                "warning",
                where,
                f'no "{extension}" caption files',
                f'sd-scripts will caption every image "{item.concept.concept.class_tokens}"; add captions for better '
                "control",
            )
        return
    missing = [image.path for image in images if image.path not in paired]
    if missing:
        report.add(
            "warning",
            where,
            f'{len(missing)} of {len(images)} images have no "{extension}" caption: {_listed(missing, root)}',
            f'they train with the caption "{item.concept.concept.class_tokens}"',
        )
    bad_encoding, empty, bom = [], [], []
    for caption in paired.values():
        data = caption.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            bad_encoding.append(caption)
            continue
        if text.startswith("\ufeff"):
            bom.append(caption)
        if not text.strip():
            empty.append(caption)
    if bad_encoding:
        report.add(
            "error",
            where,
            f"{len(bad_encoding)} caption file(s) are not UTF-8: {_listed(bad_encoding, root)}",
            "re-save them as UTF-8 (sd-scripts crashes on them)",
        )
    if bom:
        report.add(
            "warning",
            where,
            f"{len(bom)} caption file(s) start with a byte-order mark that becomes part of the first tag: "
            f"{_listed(bom, root)}",
            "re-save them as UTF-8 without BOM",
        )
    if empty:
        report.add(
            "warning",
            where,
            f"{len(empty)} caption file(s) are empty: {_listed(empty, root)}",
            "write a caption or delete the file",
        )


def _check_stray_folders(report: CheckReport) -> None:
    """Folders under image/ and reg/ that the spec does not train: sd-scripts' folder mode users expect
    every `N_name` folder (and a forgotten prefix means its images are silently dropped). A concept's
    folder whose repeats prefix is not the spec's trains with the spec's repeats (settings.concept_folder)."""
    layout = report.loaded.layout
    trained = {c.folder: c for c in report.settings.concepts}
    for item in report.settings.concepts:
        if item.folder.name != item.concept.folder_name:
            report.add(
                "info",
                relative(item.folder, layout.root),
                f"trains with repeats = {item.concept.repeats} from the spec (sd-scripts reads num_repeats from "
                "dataset.toml; the folder's prefix is only the kohya_ss GUI's convention)",
                f"rename it to '{item.concept.folder_name}' if the GUI should show the same",
            )
    for parent, is_reg in ((layout.image_dir, False), (layout.reg_dir, True)):
        if not parent.is_dir():
            continue
        by_words = {c.concept.class_tokens: c for c in trained.values() if c.is_reg == is_reg}
        for entry in sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if entry in trained:
                continue
            where = relative(entry, layout.root)
            match = FOLDER_NAME.match(entry.name)
            words = match.group(2) if match else entry.name
            concept = by_words.get(words)
            if concept is not None and match:
                report.add(
                    "error",
                    where,
                    f"a second folder of concept {concept.label!r}, which trains "
                    f"{relative(concept.folder, layout.root)}, so its images are not trained",
                    f"move its images into {relative(concept.folder, layout.root)}",
                )
            elif concept is not None:
                report.add(
                    "error",
                    where,
                    "folder name lacks the '<repeats>_' prefix, so sd-scripts would skip it",
                    f"rename it to '{concept.concept.folder_name}'",
                )
            elif not match:
                report.add(
                    "error",
                    where,
                    "folder name lacks the '<repeats>_' prefix and is not a concept in the spec, so its images are "
                    "not trained",
                    f"rename it to '10_{entry.name}' and add it as a [[concepts]] entry, or move it out of "
                    f"{parent.name}/",
                )
            else:
                report.add(
                    "error",
                    where,
                    "is not a concept in the spec, so its images are not trained",
                    f"add a [[concepts]] entry with repeats = {match.group(1)} for '{words}', or move it out of "
                    f"{parent.name}/",
                )


def _check_bucket_range(report: CheckReport) -> None:
    """sd-scripts asserts these at start-up, after loading the model; say so before."""
    settings, dataset = report.settings.bucket, report.loaded.spec.dataset
    if not settings.enable_bucket:
        return
    short, long = min(settings.resolution), max(settings.resolution)
    if settings.min_reso > short:
        origin = "" if dataset.min_bucket_reso is not None else " (sd-scripts' default)"
        report.add(
            "error",
            "dataset.min_bucket_reso",
            f"{settings.min_reso}{origin} is above the resolution's short side {short}; sd-scripts stops on it",
            f"set dataset.min_bucket_reso = {short - short % settings.reso_steps or settings.reso_steps}",
        )
    if settings.max_reso < long:
        origin = "" if dataset.max_bucket_reso is not None else " (sd-scripts' default)"
        report.add(
            "error",
            "dataset.max_bucket_reso",
            f"{settings.max_reso}{origin} is below the resolution's long side {long}; sd-scripts stops on it",
            f"set dataset.max_bucket_reso = {2 * long}",
        )


def _check_buckets(report: CheckReport) -> None:
    settings = report.settings.bucket
    selector = BucketSelector(settings)
    for item in report.concepts:
        failed = []
        for image in item.scan.images:
            if image.size is None:
                continue
            try:
                selector.select(*image.size)
            except BucketError:
                failed.append(image)
        if failed:
            example = failed[0]
            report.add(
                "error",
                relative(item.folder, report.loaded.layout.root),
                f"{len(failed)} image(s) get a zero-pixel bucket at resolution "
                f"{settings.resolution[0]}×{settings.resolution[1]} "
                f"with bucket_reso_steps {settings.reso_steps}, e.g. {example.path.name} "
                f"({example.size[0]}×{example.size[1]}); sd-scripts crashes on them",
                "raise dataset.resolution, lower dataset.bucket_reso_steps, or crop those images closer to square",
            )


def _check_models(report: CheckReport) -> None:
    family = report.loaded.spec.model.family_info
    if not family.known:
        report.add(
            "warning",
            "model.family",
            f"'{family.name}' is not in kohya-wrap's family table: it trains with {family.script} and "
            f"{family.network_module} (from its name), and its options are checked against that script, but "
            "kohya-wrap does not know its model files (text encoders, VAE/AE), tokenizers or bucket step, nor "
            "renders grids for it",
            "give its model files as model.clip_l / model.t5xxl / model.ae / model.vae where it takes those, "
            f"and others as the [training] keys {family.script} takes (`kohya-wrap vendor "
            f"options --script {family.script}` lists them); sd-scripts checks them at start",
        )
    module = report.settings.network_module
    family_module = family.network_module
    if module != family_module and (module == "networks.lora" or module.startswith("networks.lora_")):
        # another family's LoRA module (a preset for another family, say): it would not find this model's layers
        report.add(
            "warning",
            "training.network_module",
            f"{module} is the LoRA module of another model family; {family.script} trains {family.name} LoRAs with "
            f"{family_module}",
            f'set training.network_module = "{family_module}" (or remove it: that is the default)',
        )
    for ref in report.models:
        if ref.problem is not None:
            report.add("error", ref.problem.where, ref.problem.what, ref.problem.fix)
        elif ref.note:
            report.add("info", f"model.{ref.field}", ref.note)
    if family.name == "sd3":
        _check_sd3_text_encoders(report)


def _check_sd3_text_encoders(report: CheckReport) -> None:
    spec = report.loaded.spec
    base = next((ref.value for ref in report.models if ref.field == "base" and ref.value), None)
    if base is None:
        return
    given = {f"model.{key}" for key in ("clip_l", "t5xxl") if getattr(spec.model, key, None)}
    given |= {f"training.{key}" for key, value in (spec.training.model_extra or {}).items() if value}
    for where, name in missing_sd3_text_encoders(Path(base), given):
        report.add(
            "error",
            where,
            f"{Path(base).name} holds no {name} text encoder, and {where} is not set: sd3_train_network.py would "
            "train without it",
            f"set {where} to its file (the SD3.5 repositories have it under text_encoders/)",
        )


def _check_output(report: CheckReport) -> None:
    layout = report.loaded.layout
    target = layout.model_dir
    probe = target if target.exists() else target.parent
    if target.exists() and not target.is_dir():
        report.add(
            "error",
            relative(target, layout.root),
            "is a file, but sd-scripts saves the LoRA into this folder",
            "move the file away",
        )
    elif not os.access(probe, os.W_OK | os.X_OK):
        report.add(
            "error",
            relative(target, layout.root),
            "is not writable, so sd-scripts would fail at its first save (after training)",
            "fix the folder's permissions",
        )


def _check_sd_scripts(report: CheckReport) -> None:
    sd = report.sd_scripts
    where = "sd_scripts.path" if sd.origin == "project" else "sd-scripts"
    if not sd.present:
        severity = "error" if sd.origin == "project" else "info"
        report.add(
            severity,
            where,
            f"not found at {sd.root} (needed to train, not to plan; options were checked against "
            f"{report.loaded.schema.source})",
            "run `kohya-wrap vendor install`, or `kohya-wrap vendor use PATH` for an existing checkout",
        )
    elif not sd.python_present:
        report.add(
            "error" if sd.origin == "project" else "info",
            where,
            f"found at {sd.root} but not its Python {sd.python}",
            "`kohya-wrap vendor use PATH --python PY` names it",
        )
    elif not sd.trusted:
        report.add(
            "warning",
            where,
            f"names sd-scripts at {sd.root} run by {sd.python}, which you have not trusted: kohya-wrap runs no "
            f"program a project names, so options were checked against {report.loaded.schema.source} and "
            "`run` will not start",
            f"if you trust them, run `{trust_command(sd, report.loaded.layout.root)}` once",
        )


def _check_environment(report: CheckReport) -> None:
    """What fails only after the model loads, from sd-scripts' venv and the network (preflight.py);
    with no sd-scripts installed there is nothing to probe."""
    sd = report.sd_scripts
    if not sd.usable:
        report.add(
            "info",
            "environment",
            "not checked without an installed sd-scripts: its venv's CUDA devices and mixed precision, xformers, "
            "bitsandbytes and the tokenizers it downloads at start-up are checked once there is one",
        )
        return
    report.findings.extend(preflight(sd, report.settings, report.loaded.spec))


def check_project(loaded: LoadedSpec) -> CheckReport:
    concepts = [ConceptScan(concept, scan_folder(concept.folder)) for concept in loaded.settings.concepts]
    report = CheckReport(loaded, concepts, resolve_model_refs(loaded.spec.model, loaded.layout.root))
    for note in loaded.notes:  # what loading decided (e.g. a preset's epochs dropped for the spec's steps)
        report.add("info", "spec", note)
    for item in concepts:
        _check_concept(report, item)
    _check_bucket_range(report)
    _check_buckets(report)
    report.lint = lint_project(concepts, loaded.settings, loaded.layout.root)
    for concept_lint in report.lint:
        report.findings.extend(concept_lint.findings)
    _check_stray_folders(report)
    _check_models(report)
    _check_output(report)
    _check_sd_scripts(report)
    _check_environment(report)
    return report
