"""One source photo → one training image (the per-image half of `prep`; dataset/prep.py runs it per
concept on every core).

Read the bytes once (SHA-256 of the source), decode at reduced scale where the format allows it (JPEG DCT
scaling, never below 2× the output scale so quality is kept), first frame of animations, EXIF orientation
applied, colour profile converted to sRGB, CMYK / palette / 16-bit / greyscale to 8-bit RGB, alpha
composited on a background colour, then crop / fit / bucket / none with Lanczos-3 on just the region kept,
a difference hash for near-duplicates, and an atomic write. Sources are only ever opened for reading.

Two engines do the decode and resize. RGB and greyscale JPEGs (camera photos: the bulk of the work)
go through libvips (pyvips) when it is installed: its shrink-on-load decode plus its vectorised
Lanczos-3 is the fastest path measured here (docs/BENCHMARKS.md), and orientation and colour profile
are applied to the small result. Everything else, and every image with `engine = "pillow"`, goes
through Pillow (draft() DCT scaling for JPEG, LANCZOS with a box). Both give the same geometry.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from kohya_wrap.dataset.dhash import dhash
from kohya_wrap.dataset.facts import failure, orientation_of
from kohya_wrap.fsutil import write_bytes_atomic
from kohya_wrap.sdscripts.stepmath import BucketSelector, BucketSettings

SOURCE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".avif"}
CAPTION_SUFFIXES = (".txt", ".caption", ".tags")
OUTPUT_SUFFIX = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}


@dataclass(frozen=True)
class PrepSettings:
    mode: str  # crop | fit | bucket | none
    size: tuple[int, int]  # the training resolution (W, H)
    out_format: str = "png"  # png | jpg | webp
    quality: int = 95
    png_level: int = 1  # zlib level: 6 (Pillow's default) costs 5× the time for ~12 % smaller files
    focus: str = "center"  # center | entropy
    background: tuple[int, int, int] = (255, 255, 255)  # behind transparent pixels
    pad_color: tuple[int, int, int] = (0, 0, 0)  # fit mode's borders
    min_size: int = 0  # shorter side below this: rejected
    max_aspect: float = 4.0  # long side / short side above this: rejected
    buckets: BucketSettings | None = None  # for bucket mode
    engine: str = "auto"  # auto (libvips for JPEGs when pyvips is installed) | vips | pillow


class WriteError(Exception):
    """A training image could not be written (disk full, no permission, read-only file system): the
    folder's problem, never the photo's, so it stops `prep` instead of rejecting the photo."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(f"{path}: {error.strerror or error}")
        self.path = path
        self.error = error


@dataclass
class PrepResult:
    source: str
    sha256: str = ""
    status: str = "ok"  # ok | rejected
    reason: str = ""
    output: str = ""
    source_size: tuple[int, int] | None = None
    output_size: tuple[int, int] | None = None
    ops: list[str] = field(default_factory=list)
    dhash: int | None = None
    pixels: int = 0
    bytes: int = 0  # the source's size and modification time: unchanged sources are skipped next time
    mtime_ns: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dhash"] = f"{self.dhash:016x}" if self.dhash is not None else None
        return data


@lru_cache(maxsize=4)
def _bucket_selector(buckets: BucketSettings) -> BucketSelector:
    return BucketSelector(buckets)  # builds sd-scripts' bucket list: once, not per image


def output_size(settings: PrepSettings, width: int, height: int) -> tuple[int, int]:
    if settings.mode in ("crop", "fit"):
        return settings.size
    if settings.mode == "bucket":
        return _bucket_selector(settings.buckets).select(width, height)
    return (width, height)


_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


@lru_cache(maxsize=1)
def vips():
    """pyvips, or None where it (or its libvips) is not installed."""
    os.environ.setdefault("VIPS_CONCURRENCY", "1")  # no threads of libvips' own: prep's pool already fills every core
    try:
        import pyvips
    except Exception:  # noqa: BLE001 - ImportError, or OSError/other when the libvips library itself is missing
        return None
    pyvips.cache_set_max(0)  # every source is decoded once: caching only costs memory
    return pyvips


def _vips_engine(settings: PrepSettings, image) -> bool:
    return (
        settings.engine != "pillow"
        and image.format == "JPEG"
        and image.mode in ("RGB", "L")
        and settings.mode in ("crop", "bucket", "fit")
        and not (settings.focus == "entropy" and settings.mode == "crop")
        and vips() is not None
    )


def _shrink(raw: tuple[int, int], scale: float) -> int:
    """The largest JPEG DCT scale-down (1, 2, 4, 8) that still leaves ≥ 2× the output resolution."""
    need = (math.ceil(raw[0] * scale * 2), math.ceil(raw[1] * scale * 2))
    fits = min(raw[0] // max(1, need[0]), raw[1] // max(1, need[1]))
    return next(s for s in (8, 4, 2, 1) if s <= max(1, fits))


def _vips_resize(
    data: bytes, image, orientation: int, settings: PrepSettings, out: tuple[int, int], scale: float, ops: list[str]
):
    """libvips: decode at reduced scale, crop (crop/bucket) and Lanczos-3 resize in the file's own
    orientation, then hand the small result to Pillow upright, its ICC profile attached for _to_rgb."""
    from PIL import Image

    pyvips = vips()
    swapped = orientation in (5, 6, 7, 8)
    tw, th = (out[1], out[0]) if swapped else out  # the output in the file's stored orientation
    shrink = _shrink(image.size, scale) if scale < 0.5 else 1
    try:
        # a JPEG without its end-of-image marker near the end is cut short: have libvips fail on it
        # (checking every scanline for that costs ~5 % on whole files, so only then)
        whole = data.rfind(b"\xff\xd9", max(0, len(data) - 65536)) != -1
        decoded = pyvips.Image.jpegload_buffer(
            data, shrink=shrink, access="sequential", **({} if whole else {"fail_on": "truncated"})
        )
        dw, dh = decoded.width, decoded.height
        if settings.mode in ("crop", "bucket"):
            cover = max(tw / dw, th / dh)
            cw, ch = min(dw, round(tw / cover)), min(dh, round(th / cover))
            region = decoded.crop(round((dw - cw) / 2), round((dh - ch) / 2), cw, ch)
            size = (tw, th)
        else:  # fit
            fit = min(tw / dw, th / dh)
            region, size = decoded, (max(1, round(dw * fit)), max(1, round(dh * fit)))
        resized = region.resize(size[0] / region.width, vscale=size[1] / region.height, kernel="lanczos3")
        pixels = resized.write_to_memory()
    except pyvips.Error as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = (lines[-1] if lines else "libvips could not decode it").removeprefix("VipsJpeg: ")
        raise OSError(f"image file is truncated ({detail})" if "premature end" in detail else detail) from None
    mode = {1: "L", 3: "RGB"}[resized.bands]
    result = Image.frombuffer(mode, (resized.width, resized.height), pixels, "raw", mode, 0, 1)
    if result.size != size:  # libvips rounded a side differently: a last exact step on the small image
        result = result.resize(size, Image.Resampling.LANCZOS)
    if shrink > 1:
        ops.append(f"decoded at 1/{shrink} scale (libvips)")
    if orientation != 1 and orientation in _TRANSPOSE:
        result = result.transpose(getattr(Image.Transpose, _TRANSPOSE[orientation]))
        ops.append(f"EXIF orientation {orientation} applied")
    if image.info.get("icc_profile"):
        result.info["icc_profile"] = image.info["icc_profile"]
    return result


@lru_cache(maxsize=None)
def format_support(suffix: str) -> str | None:
    """None when Pillow can read this extension here (HEIC/HEIF through pillow-heif, AVIF natively in
    Pillow ≥ 11.3 or through pillow-avif-plugin), else why not and what to install."""
    if suffix in (".heic", ".heif"):
        try:
            import pillow_heif
        except ImportError:
            return (
                "HEIC/HEIF needs the optional plugin pillow-heif: "
                "pip install 'kohya-wrap[heic]' (or pip install pillow-heif)"
            )
        pillow_heif.register_heif_opener()
    elif suffix == ".avif":
        from PIL import features

        if not features.check("avif"):
            try:
                import pillow_avif  # noqa: F401 - registers the AVIF plugin on import
            except ImportError:
                return "AVIF needs Pillow ≥ 11.3 built with AVIF, or the plugin: pip install pillow-avif-plugin"
    return None


def _to_rgb(image, settings: PrepSettings, ops: list[str]):
    """Any mode → 8-bit sRGB RGB: ICC profile converted, alpha composited, 16-bit scaled, CMYK converted."""
    from PIL import Image, ImageCms

    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "RGBA", "CMYK", "L", "LA"):
        try:
            source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            description = ImageCms.getProfileDescription(source_profile).strip()
            if "srgb" not in description.lower():
                target_mode = "RGBA" if image.mode in ("RGBA", "LA") else "RGB"
                image = ImageCms.profileToProfile(
                    image.convert("RGBA" if image.mode == "LA" else image.mode),
                    source_profile,
                    ImageCms.createProfile("sRGB"),
                    outputMode=target_mode,
                )
                ops.append(f"colour profile {description or 'embedded'} → sRGB")
        except (OSError, ImageCms.PyCMSError, ValueError):
            ops.append("unreadable colour profile ignored")
    if image.mode.startswith("I;16") or image.mode == "I":
        sixteen = image.mode.startswith("I;16") or image.getextrema()[1] > 255
        image = image.convert("I")
        image = (image.point(lambda v: v / 257) if sixteen else image).convert("L")
        ops.append("16-bit → 8-bit")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        ops.append("palette → RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            canvas = Image.new("RGB", rgba.size, settings.background)
            canvas.paste(rgba, mask=rgba.getchannel("A"))
            ops.append("alpha composited on #%02x%02x%02x" % settings.background)
            return canvas
        return rgba.convert("RGB")
    if image.mode == "CMYK":
        ops.append("CMYK → RGB")
    elif image.mode != "RGB":
        ops.append(f"{image.mode} → RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def _entropy_box(image, crop_w: float, crop_h: float) -> tuple[float, float]:
    """Top-left corner of the crop window (in `image` pixels) with the most detail: slide the window
    along the one axis where it has room and keep the position whose pixels have the highest entropy
    (measured on a small greyscale copy)."""
    width, height = image.size
    small_scale = 128 / max(width, height)
    small = image.convert("L").resize((max(1, round(width * small_scale)), max(1, round(height * small_scale))))
    sw, sh = small.size
    win_w, win_h = max(1, round(crop_w * small_scale)), max(1, round(crop_h * small_scale))
    horizontal = width - crop_w > height - crop_h
    room = (sw - win_w) if horizontal else (sh - win_h)
    if room <= 0:
        return ((width - crop_w) / 2, (height - crop_h) / 2)
    best, best_offset = -1.0, 0
    for offset in range(0, room + 1, max(1, room // 16)):
        box = (offset, 0, offset + win_w, sh) if horizontal else (0, offset, sw, offset + win_h)
        value = small.crop(box).entropy()
        if value > best:
            best, best_offset = value, offset
    if horizontal:
        return (min(width - crop_w, best_offset / small_scale), (height - crop_h) / 2)
    return ((width - crop_w) / 2, min(height - crop_h, best_offset / small_scale))


def _encode(image, settings: PrepSettings) -> bytes:
    buffer = io.BytesIO()
    if settings.out_format == "png":
        image.save(buffer, "PNG", compress_level=settings.png_level)
    elif settings.out_format == "jpg":
        image.save(
            buffer, "JPEG", quality=settings.quality, subsampling=0 if settings.quality >= 90 else 2, optimize=False
        )
    else:
        image.save(buffer, "WEBP", quality=settings.quality, method=4)
    return buffer.getvalue()


def prepare_one(source: str, target: str, settings: PrepSettings) -> PrepResult:
    """One source → one training image at `target` (written atomically), or a rejection with a reason;
    WriteError when `target` cannot be written."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    result = PrepResult(source=source)
    try:
        with open(source, "rb") as handle:
            data = handle.read()
            stat = os.fstat(handle.fileno())
        result.bytes, result.mtime_ns = stat.st_size, stat.st_mtime_ns
    except OSError as exc:
        return reject(result, f"unreadable: {exc.strerror or exc}")
    result.sha256 = hashlib.sha256(data).hexdigest()
    unsupported = format_support(Path(source).suffix.lower())
    if unsupported:
        return reject(result, f"unsupported format: {unsupported}")
    try:
        image = Image.open(io.BytesIO(data))
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            result.ops.append(f"first frame of {frames}")
        orientation = orientation_of(image)
        raw_w, raw_h = image.size
        width, height = (raw_h, raw_w) if orientation in (5, 6, 7, 8) else (raw_w, raw_h)
        result.source_size = (width, height)
        if min(width, height) < settings.min_size:
            return reject(result, f"too small: {width}×{height}, the shorter side is under {settings.min_size} px")
        if max(width, height) / min(width, height) > settings.max_aspect:
            return reject(
                result,
                f"extreme aspect ratio {width}×{height} (over {settings.max_aspect:g}:1, beyond the bucket limits)",
            )
        out_w, out_h = output_size(settings, width, height)
        scale = (
            max(out_w / width, out_h / height)
            if settings.mode in ("crop", "bucket")
            else min(out_w / width, out_h / height)
        )
        if _vips_engine(settings, image):
            image = _to_rgb(
                _vips_resize(data, image, orientation, settings, (out_w, out_h), scale, result.ops),
                settings,
                result.ops,
            )
            if settings.mode == "fit":
                image = _pad(image, (out_w, out_h), settings.pad_color)
                result.ops.append(f"fit {out_w}×{out_h}, padded")
            else:
                result.ops.append(f"{settings.mode} {out_w}×{out_h}")
            return _finish(result, image, width * height, target, settings)
        if image.format == "JPEG" and settings.mode != "none" and scale < 0.5:
            # decode at the smallest DCT scale that still leaves ≥ 2× the output resolution
            need = (math.ceil(raw_w * scale * 2), math.ceil(raw_h * scale * 2))
            image.draft("RGB" if image.mode in ("RGB", "YCbCr") else image.mode, need)
            if image.size != (raw_w, raw_h):
                result.ops.append(f"decoded at 1/{raw_w // image.size[0]} scale")
        image.load()
        if orientation != 1:
            from PIL import ImageOps

            image = ImageOps.exif_transpose(image)
            result.ops.append(f"EXIF orientation {orientation} applied")
        image = _to_rgb(image, settings, result.ops)
        width_d, height_d = image.size  # decoded (maybe reduced) size, upright
        if settings.mode in ("crop", "bucket"):
            cover = max(out_w / width_d, out_h / height_d)
            crop_w, crop_h = out_w / cover, out_h / cover
            if settings.focus == "entropy" and settings.mode == "crop":
                left, top = _entropy_box(image, crop_w, crop_h)
            else:
                left, top = (width_d - crop_w) / 2, (height_d - crop_h) / 2
            image = image.resize((out_w, out_h), Image.Resampling.LANCZOS, box=(left, top, left + crop_w, top + crop_h))
            result.ops.append(
                f"{'crop' if settings.mode == 'crop' else 'bucket'} {out_w}×{out_h}"
                + (" (entropy focus)" if settings.focus == "entropy" and settings.mode == "crop" else "")
            )
        elif settings.mode == "fit":
            fit = min(out_w / width_d, out_h / height_d)
            inner = (max(1, round(width_d * fit)), max(1, round(height_d * fit)))
            image = _pad(image.resize(inner, Image.Resampling.LANCZOS), (out_w, out_h), settings.pad_color)
            result.ops.append(f"fit {out_w}×{out_h}, padded")
        return _finish(result, image, width * height, target, settings)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return reject(result, failure(exc))  # one clean line: never Pillow's `<_io.BytesIO object at 0x…>`


def _pad(image, size: tuple[int, int], color: tuple[int, int, int]):
    from PIL import Image

    canvas = Image.new("RGB", size, color)
    canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    return canvas


def _finish(result: PrepResult, image, pixels: int, target: str, settings: PrepSettings) -> PrepResult:
    result.dhash = dhash(image)
    result.pixels = pixels
    result.output_size = image.size
    encoded = _encode(image, settings)
    try:
        write_bytes_atomic(Path(target), encoded)
    except OSError as exc:  # not the photo's fault: never a rejection (prepare_one turns OSError into one)
        raise WriteError(Path(target), exc) from exc
    result.output = target
    result.ops.append(f"saved {settings.out_format}")
    return result


def reject(result: PrepResult, reason: str) -> PrepResult:
    result.status, result.reason = "rejected", reason
    return result


def prepare_job(job: tuple[str, str, PrepSettings]) -> PrepResult:
    return prepare_one(*job)
