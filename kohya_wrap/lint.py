"""`lint`: what is wrong with the training images themselves, found before hours of training on them.

Per concept folder (as sd-scripts will read it): how many images and whether that is enough, their
resolutions, images far below the training size, which ones sd-scripts would upscale, the bucket
histogram with single-image buckets, EXIF orientations and transparency sd-scripts ignores,
near-duplicates, orphan captions, captions missing the trigger token or pushed away from the front by
shuffling, captions past the CLIP token window, captions sd-scripts will not read because of their
extension, and mixed file formats. `check` runs the same findings; `lint` also shows the statistics.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kohya_wrap.dataset.dhash import HashCache, hamming
from kohya_wrap.dataset.scan import CAPTION_LIKE_SUFFIXES, ConceptScan, ImageEntry
from kohya_wrap.dataset.tokens import counter_for, token_pattern
from kohya_wrap.errors import Finding, Severity
from kohya_wrap.paths import relative
from kohya_wrap.sdscripts.stepmath import BucketError, BucketSelector
from kohya_wrap.spec.settings import Settings

MIN_IMAGES = 15  # below this a LoRA mostly memorises its few images
UPSCALE_TOLERANCE = 1.05  # bucket rounding alone scales by a few per cent
# how an image with this EXIF orientation trains in sd-scripts, which shows the stored pixels
ORIENTATIONS = {
    2: "mirrored",
    3: "upside down",
    4: "upside down, mirrored",
    5: "sideways, mirrored",
    6: "sideways",
    7: "sideways, mirrored",
    8: "sideways",
}
ALPHA_BECOMES = {"black": "black", "white": "white", "other": "the colours under them"}


@dataclass
class ConceptLint:
    label: str
    folder: Path
    is_reg: bool
    images: int = 0
    formats: dict[str, int] = field(default_factory=dict)
    short_sides: tuple[int, int, int] | None = None  # min, median, max
    buckets: list[tuple[tuple[int, int], int]] = field(default_factory=list)  # (bucket, images) by count
    upscaled: int = 0
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self, root: Path) -> dict[str, Any]:
        return {
            "label": self.label,
            "folder": relative(self.folder, root),
            "is_reg": self.is_reg,
            "images": self.images,
            "formats": self.formats,
            "short_side": dict(zip(("min", "median", "max"), self.short_sides, strict=True))
            if self.short_sides
            else None,
            "buckets": [{"width": b[0], "height": b[1], "images": n} for b, n in self.buckets],
            "upscaled": self.upscaled,
            "findings": [f.as_dict() for f in self.findings],
        }


def _names(paths, limit: int = 5) -> str:
    names = [Path(p).name for p in paths]  # paths: any iterable
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _names_with(images: list[ImageEntry], note, limit: int = 5) -> str:
    """`a.jpg (note), b.png (note) and N more`."""
    shown = ", ".join(f"{i.path.name} ({note(i)})" for i in images[:limit])
    return shown + (f" and {len(images) - limit} more" if len(images) > limit else "")


def _small_listing(images: list[ImageEntry], trained: dict[Path, tuple[tuple[int, int], float]]) -> str:
    def note(image: ImageEntry) -> str:
        size = f"{image.size[0]}×{image.size[1]}"  # type: ignore[index]
        if image.path not in trained:
            return size
        bucket, scale = trained[image.path]
        if scale > UPSCALE_TOLERANCE:
            return f"{size}, upscaled ×{scale:.1f}"
        return f"{size}, trains as {bucket[0]}×{bucket[1]}"

    return _names_with(images, note)


# ---------------------------------------------------------------------------------------------- findings


def _read_captions(paths: dict[Path, Path]) -> dict[Path, str]:
    """image → caption text, for the captions that decode (check reports the others)."""
    texts = {}
    for image, caption in paths.items():
        try:
            texts[image] = caption.read_bytes().decode("utf-8").lstrip("\ufeff")
        except (OSError, UnicodeDecodeError):
            continue
    return texts


def lint_concept(item: ConceptScan, settings: Settings, root: Path, hashes: HashCache, counter) -> ConceptLint:
    own, scan = item.concept, item.scan
    concept = own.concept
    result = ConceptLint(concept.label, item.folder, concept.is_reg)
    where = relative(item.folder, root)

    def add(severity: Severity, what: str, fix: str = "") -> None:
        result.findings.append(Finding(where, what, fix, severity))

    if not scan.exists:
        return result
    images: list[ImageEntry] = [i for i in scan.images if i.size is not None and not i.damage]
    result.images = len(scan.images)
    formats = Counter(
        {".jpeg": ".jpg"}.get(
            os.path.splitext(i.path.name)[1].lower(), os.path.splitext(i.path.name)[1].lower()
        ).lstrip(".")
        for i in scan.images
    )
    result.formats = dict(formats.most_common())
    if not images:
        return result
    shorts = sorted(min(i.size) for i in images)  # type: ignore[arg-type]
    result.short_sides = (shorts[0], shorts[len(shorts) // 2], shorts[-1])

    # --- how many
    if not concept.is_reg and len(scan.images) < MIN_IMAGES:
        add(
            "warning",
            f"only {len(scan.images)} image(s): a LoRA trained on fewer than ~{MIN_IMAGES} tends to copy their poses, "
            "framing and backgrounds instead of learning the subject",
            "add more varied images (angles, distances, backgrounds, lighting); 20–50 is a common range",
        )

    # --- buckets and upscaling, the way sd-scripts assigns them
    selector = BucketSelector(settings.bucket)
    per_bucket: dict[tuple[int, int], list[ImageEntry]] = {}
    upscaled: list[tuple[float, ImageEntry]] = []
    trained: dict[Path, tuple[tuple[int, int], float]] = {}  # image → its bucket and the scale to it
    floor = min(settings.resolution) // 2  # prep's default min_size: what it rejects
    for image in images:
        width, height = image.size  # type: ignore[misc]
        try:
            bucket = selector.select(width, height)
        except BucketError:
            continue  # check reports these as errors
        per_bucket.setdefault(bucket, []).append(image)
        scale = max(bucket[0] / width, bucket[1] / height)
        trained[image.path] = (bucket, scale)
        if scale > UPSCALE_TOLERANCE:
            upscaled.append((scale, image))
    result.buckets = sorted(((b, len(v)) for b, v in per_bucket.items()), key=lambda bn: (-bn[1], bn[0]))
    result.upscaled = len(upscaled)
    tiny = sorted((i for i in images if min(i.size) < floor), key=lambda i: min(i.size))  # type: ignore[arg-type]
    if tiny:
        add(
            "warning",
            f"{len(tiny)} image(s) are far below the {settings.resolution[0]}×{settings.resolution[1]} training size "
            f"(shorter side under {floor} px): {_small_listing(tiny, trained)}; they train blurred or with next to "
            "no detail",
            f"replace them with larger originals, or leave them out: `kohya-wrap prep` rejects images whose "
            f"shorter side is under {floor} px",
        )
    upscaled = [(s, i) for s, i in upscaled if min(i.size) >= floor]  # type: ignore[arg-type] # the tiny ones: above
    if upscaled:
        upscaled.sort(key=lambda si: -si[0])
        examples = ", ".join(f"{i.path.name} ({i.size[0]}×{i.size[1]}, ×{s:.1f})" for s, i in upscaled[:3])  # type: ignore[index]
        add(
            "warning",
            f"{len(upscaled)} image(s) are smaller than their training size and get upscaled, which trains blur: "
            f"{examples}" + (f" and {len(upscaled) - 3} more" if len(upscaled) > 3 else ""),
            "use larger originals, lower dataset.resolution, or set dataset.bucket_no_upscale = true",
        )
    if settings.bucket.enable_bucket and len(per_bucket) > 1:
        single = [(b, v[0]) for b, v in per_bucket.items() if len(v) == 1]
        if single:
            batch = settings.batch_size
            listing = ", ".join(f"{b[0]}×{b[1]} ({img.path.name})" for b, img in single[:5]) + (
                f" and {len(single) - 5} more" if len(single) > 5 else ""
            )
            if batch > 1:
                add(
                    "warning",
                    f"{len(single)} bucket(s) hold a single image: {listing}; with a batch size of {batch} each batch "
                    "from such a bucket repeats that one image",
                    "crop those images to a common aspect ratio (`kohya-wrap prep --mode crop`), or add images of "
                    "that shape",
                )
            else:
                add(
                    "info",
                    f"{len(single)} bucket(s) hold a single image: {listing}",
                    "fine at a batch size of 1; with larger batches crop them to a common aspect ratio",
                )

    # --- what sd-scripts' loader gets wrong without a word (library/train_util.py:2948 load_image opens
    # each file and converts it to RGB: no EXIF orientation applied, the alpha channel dropped)
    turned = [i for i in images if i.orientation != 1]
    if turned:
        add(
            "warning",
            f"{len(turned)} image(s) carry an EXIF orientation that sd-scripts does not apply, so they train as "
            "stored, not as every viewer shows them: "
            + _names_with(turned, lambda i: ORIENTATIONS.get(i.orientation, "turned")),
            "run `kohya-wrap prep` (it applies the orientation and writes upright images), or re-save them upright",
        )
    transparent = [i for i in images if i.alpha in ("black", "white", "other")]
    if transparent and own.alpha_mask:
        add(
            "info",
            f"{len(transparent)} image(s) have transparent areas, which alpha_mask leaves out of the loss: "
            f"{_names(i.path for i in transparent)}",
        )
    elif transparent:
        only_white = all(i.alpha == "white" for i in transparent)
        add(
            "info" if only_white else "warning",
            f"{len(transparent)} image(s) have transparent areas, and sd-scripts drops the alpha channel, so "
            "those areas train as the colour stored under them: "
            + _names_with(transparent, lambda i: ALPHA_BECOMES[i.alpha]),
            "run `kohya-wrap prep` (it composites them on its background colour, white unless [prep] background "
            "says otherwise), or flatten them on the background you want",
        )

    # --- near-duplicates
    distance = settings.near_duplicate_distance
    if distance:
        known = hashes.hashes([i.path for i in images])
        hashed = [(i, known[i.path]) for i in images if i.path in known]
        pairs = []
        for n, (a, ha) in enumerate(hashed):
            for b, hb in hashed[n + 1 :]:
                if hamming(ha, hb) <= distance:
                    pairs.append((a, b))
        if pairs:
            listing = ", ".join(f"{a.path.name} ≈ {b.path.name}" for a, b in pairs[:5]) + (
                f" and {len(pairs) - 5} more" if len(pairs) > 5 else ""
            )
            add(
                "warning",
                f"{len(pairs)} near-duplicate pair(s) (difference hashes within {distance} bits): {listing}; each "
                "pair trains like one image with double weight",
                "keep one image of each pair (`kohya-wrap prep` rejects near-duplicates)",
            )

    # --- captions
    extension = own.caption_extension
    paired = scan.captions_with(extension)
    image_stems = {os.path.splitext(str(i.path))[0] for i in scan.images} | {
        os.path.splitext(str(p))[0] for p in scan.skipped
    }
    orphans = [
        s for s in scan.sidecars if s.name.endswith(extension) and os.path.splitext(str(s))[0] not in image_stems
    ]
    if orphans:
        add(
            "warning",
            f"{len(orphans)} caption file(s) have no image next to them: {_names(orphans)}",
            "delete them, or restore their images (a renamed image loses its caption)",
        )
    if paired:
        captioned = {str(c) for c in paired.values()}
        other = [
            s
            for s in scan.sidecars
            if not s.name.endswith(extension)
            and os.path.splitext(str(s))[0] in image_stems
            and os.path.splitext(str(s))[0] + extension not in captioned
            and os.path.splitext(s.name)[1] in CAPTION_LIKE_SUFFIXES
        ]
        if other:
            ext = Counter(os.path.splitext(s.name)[1] for s in other).most_common(1)[0][0]
            add(
                "warning",
                f'{len(other)} image(s) have a "{ext}" caption but no "{extension}" one, and sd-scripts reads only '
                f'"{extension}": {_names(other)}',
                f'rename them to "{extension}" (or set caption_extension)',
            )
    texts = _read_captions(paired)
    if texts and not concept.is_reg:
        pattern = token_pattern(concept.token)
        lacking = [image for image, text in texts.items() if not pattern.search(text)]
        if lacking:
            add(
                "warning",
                f'{len(lacking)} of {len(texts)} caption(s) do not contain the trigger token "{concept.token}": '
                f"{_names(paired[i] for i in lacking)}",
                f'add "{concept.token}" at the start of each caption: it is the word the LoRA learns to respond to',
            )
        if own.shuffle_caption:
            keep = own.keep_tokens
            if keep < 1:
                add(
                    "warning",
                    f'shuffle_caption is on with keep_tokens = 0, so the trigger token "{concept.token}" is shuffled '
                    "to a random place in every caption",
                    "put the trigger token first in each caption and set dataset.keep_tokens = 1",
                )
            else:
                buried = [
                    image
                    for image, text in texts.items()
                    if pattern.search(text) and not any(pattern.search(tag) for tag in text.split(",")[:keep])
                ]
                if buried:
                    add(
                        "warning",
                        f'{len(buried)} caption(s) have the trigger token "{concept.token}" after the first {keep} '
                        "tag(s) that keep_tokens holds in place, so shuffling moves it: "
                        f"{_names(paired[i] for i in buried)}",
                        "put the trigger token first in those captions",
                    )
    window = settings.token_window
    if texts and window:
        lengths = {image: counter.count(text) for image, text in texts.items()}
        long = sorted((image for image, n in lengths.items() if n > window), key=lambda i: -lengths[i])
        if long:
            most = max(lengths[i] for i in long)
            bound = "" if counter.exact else "at least "
            wider = 150 if window < 150 and most <= 150 and counter.exact else 225  # a lower bound may be well short
            fix = "shorten them" if window >= 225 else f"shorten them, or set training.max_token_length = {wider}"
            add(
                "warning",
                f"{len(long)} caption(s) are longer than the {window}-token window ({bound}{most} tokens), and "
                f"sd-scripts drops the rest: {_names(paired[i] for i in long)}",
                fix,
            )

    # --- formats
    if len(formats) > 1:
        add(
            "info",
            "mixed file formats: " + ", ".join(f"{n} {ext}" for ext, n in formats.most_common()),
            "fine for sd-scripts; `kohya-wrap prep --format png` writes one lossless format",
        )
    return result


def lint_project(concepts: list[ConceptScan], settings: Settings, root: Path) -> list[ConceptLint]:
    counter = counter_for(settings.tokenizer_cache_dir)
    hashes = HashCache(root)
    results = [lint_concept(item, settings, root, hashes, counter) for item in concepts]
    hashes.save()
    return results
