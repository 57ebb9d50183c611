#!/usr/bin/env python3
"""How fast is `prep`, and is its output as good as the slow way? Generates a corpus of large JPEG
photos (some EXIF-rotated), then in one run: the naive Pillow loop (open, exif_transpose, LANCZOS
resize of the whole image, centre crop, save), kohya-wrap's prep with each engine (the same code
`kohya-wrap prep` runs, on every core), and a bare reduced-scale decode on every core with each
decoder, in a thread pool and in a process pool (the faster is the machine's practical ceiling).
Prints images/s, the ratios, the PSNR of prep's output against the naive output, and, on a synthetic
test chart with lines, circles and text, the PSNR against the exact reference: a full-resolution
decode resized with LANCZOS over the same crop box.

    python scripts/bench_prep.py [--count 100] [--rounds 3] [--size 4000x3000] [--target 512] [--format jpg]
                                 [--grain 0.12]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def photo(size: tuple[int, int], seed: int, grain: float = 0.12):
    """A photo-like RGB image: smooth colour fields plus fine grain (0.12 → ~2.8 MB JPEG q90 at 4000×3000,
    like a phone photo; 0.25 → ~4.4 MB)."""
    from PIL import Image, ImageFilter

    small = Image.effect_noise((size[0] // 16, size[1] // 16), 60 + seed % 30).convert("RGB")
    small = small.filter(ImageFilter.GaussianBlur(2)).resize(size, Image.Resampling.BICUBIC)
    image = Image.merge(
        "RGB",
        [
            small.getchannel(0),
            small.getchannel(1).rotate(180),
            small.getchannel(2).transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        ],
    )
    return Image.blend(image, Image.effect_noise(size, 40).convert("RGB"), grain)


def make_corpus(folder: Path, count: int, size: tuple[int, int], grain: float = 0.12) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        exif = Image.Exif()
        if index % 4 == 0:
            exif[0x0112] = 6
        photo(size, index, grain).save(folder / f"photo{index:03d}.jpg", quality=90, exif=exif.tobytes())


def naive(source: Path, target: Path, size: int) -> None:
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(Image.open(source)).convert("RGB")
    scale = size / min(image.size)
    image = image.resize(
        (max(size, round(image.width * scale)), max(size, round(image.height * scale))), Image.Resampling.LANCZOS
    )
    left, top = (image.width - size) // 2, (image.height - size) // 2
    image.crop((left, top, left + size, top + size)).save(target, quality=95)


def bare_decode(job: tuple[str, int]) -> int:
    """Pillow: decode only, at the same reduced scale prep asks for (≥ 2× the output scale)."""
    from PIL import Image

    path, target = job
    image = Image.open(path)
    scale = 2 * target / min(image.size)
    image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    image.load()
    return image.width


def bare_vips_decode(job: tuple[str, int]) -> int:
    """libvips: decode only (shrink-on-load), at the same reduced scale."""
    from PIL import Image

    from kohya_wrap.dataset.prep import _shrink, vips

    path, target = job
    with Image.open(path) as header:
        shrink = _shrink(header.size, target / min(header.size))
    image = vips().Image.jpegload(path, shrink=shrink, access="sequential")
    image.write_to_memory()
    return image.width


def chart_quality(folder: Path, target: int, out_format: str = "png") -> dict[str, float]:
    """PSNR of each engine's output against the exact reference on a sharp synthetic chart."""
    from PIL import Image, ImageDraw

    from kohya_wrap.dataset.prep import PrepSettings, prepare_one

    width, height = 4000, 3000
    chart = (
        Image.effect_noise((width // 32, height // 32), 80)
        .convert("RGB")
        .resize((width, height), Image.Resampling.BICUBIC)
    )
    draw = ImageDraw.Draw(chart)
    for x in range(0, width, 37):
        draw.line((x, 0, x + 400, height), fill=(x % 255, 80, 200), width=3)
    for radius in range(50, 1500, 23):
        draw.ellipse(
            (2000 - radius, 1500 - radius, 2000 + radius, 1500 + radius), outline=(255, 255 - radius % 255, 0), width=2
        )
    for y in range(100, height, 90):
        draw.text((100, y), "kohya-wrap quality chart 0123456789 " * 6, fill=(0, 0, 0))
    source = folder / "chart.jpg"
    chart.save(source, quality=95)
    full = Image.open(source).convert("RGB")
    side = min(full.size)
    left, top = (full.width - side) / 2, (full.height - side) / 2
    full.resize((target, target), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side)).save(
        folder / "reference.png"
    )
    values = {}
    for engine in ("vips", "pillow"):
        settings = PrepSettings(
            mode="crop", size=(target, target), out_format=out_format, min_size=1, max_aspect=10, engine=engine
        )
        result = prepare_one(str(source), str(folder / f"chart-{engine}.{out_format}"), settings)
        values[engine] = psnr(folder / "reference.png", Path(result.output))
    return values


def psnr(a_path: Path, b_path: Path) -> float:
    from PIL import Image, ImageChops

    a, b = Image.open(a_path).convert("RGB"), Image.open(b_path).convert("RGB")
    histogram = ImageChops.difference(a, b).histogram()  # 256 bins per band of |a − b|
    total = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = total / (a.width * a.height * 3)
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--target", type=int, default=512)
    parser.add_argument("--format", default="jpg", choices=["jpg", "png", "webp"])
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="each fast pipeline runs this many times, interleaved; medians are reported",
    )
    parser.add_argument(
        "--grain", type=float, default=0.12, help="fine-detail noise blended in: 0.12 → ~2.8 MB files, 0.25 → ~4.4 MB"
    )
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    from kohya_wrap.dataset.prep import PrepSettings, prep_concept, vips
    from kohya_wrap.workers import worker_count

    def pool_rate(function, sources, kind: str) -> float:
        """A bare decode over the corpus on every core: `kind` threads (as prep runs) or processes."""
        from concurrent.futures import ThreadPoolExecutor

        jobs = [(str(p), args.target) for p in sources]
        started = time.perf_counter()
        if kind == "threads":
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(function, jobs))
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                list(pool.imap_unordered(function, jobs, chunksize=1))
        return len(sources) / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory(prefix="kw-bench-prep-") as temp:
        corpus, naive_out = Path(temp) / "corpus", Path(temp) / "naive"
        started = time.perf_counter()
        make_corpus(corpus, args.count, (width, height), args.grain)
        megabytes = sum(p.stat().st_size for p in corpus.iterdir()) / args.count / 1e6
        print(
            f"corpus: {args.count} JPEGs of {width}×{height} (mean {megabytes:.1f} MB) in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        sources = sorted(corpus.iterdir())
        naive_out.mkdir()
        started = time.perf_counter()
        for path in sources:
            naive(path, naive_out / path.name, args.target)
        naive_rate = len(sources) / (time.perf_counter() - started)
        print(f"naive Pillow loop, 1 process:               {naive_rate:6.1f} img/s", flush=True)

        workers = worker_count(len(sources))
        engines = ["vips", "pillow"] if vips() is not None else ["pillow"]
        suffix = {"jpg": ".jpg", "png": ".png", "webp": ".webp"}[args.format]
        measured: dict[str, list[float]] = {}
        quality = {}
        decoders = [("Pillow draft", bare_decode)] + (
            [("libvips shrink-on-load", bare_vips_decode)] if vips() is not None else []
        )
        for round_ in range(
            1, args.rounds + 1
        ):  # interleaved, so drift in the machine's speed hits every pipeline alike
            for engine in engines:
                out = Path(temp) / f"ours-{engine}"
                settings = PrepSettings(
                    mode="crop",
                    size=(args.target, args.target),
                    out_format=args.format,
                    min_size=1,
                    max_aspect=10,
                    engine=engine,
                )
                started = time.perf_counter()
                report = prep_concept("bench", corpus, out, settings, {}, 0, workers)
                rate = len(sources) / (time.perf_counter() - started)
                assert not report.rejected, report.rejected
                measured.setdefault(f"prep {engine}", []).append(rate)
                print(
                    f"round {round_}: kohya-wrap prep, engine {engine}, {workers} threads: {rate:6.1f} img/s",
                    flush=True,
                )
                if round_ == 1:
                    quality[engine] = [psnr(naive_out / p.name, out / (p.stem + suffix)) for p in sources]
            for name, function in decoders:
                for kind in ("threads", "processes"):
                    rate = pool_rate(function, sources, kind)
                    measured.setdefault(f"{name}, {kind}", []).append(rate)
                    print(f"round {round_}: bare decode, {name}, {workers} {kind}: {rate:6.1f} img/s", flush=True)
        median = {key: statistics.median(values) for key, values in measured.items()}
        rates = {engine: median[f"prep {engine}"] for engine in engines}
        # each decoder's floor: the faster of its thread-pool and process-pool medians
        decode = {name: max(median[f"{name}, threads"], median[f"{name}, processes"]) for name, _ in decoders}
        chart = chart_quality(Path(temp), args.target, "png") if vips() is not None else {}  # lossless: resampling only

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; medians of "
        f"{args.rounds} round(s):"
    )
    print(f"naive {naive_rate:.1f} img/s; " + "; ".join(f"{key} {value:.1f}" for key, value in median.items()))
    for engine in engines:
        print(
            f"engine {engine}: {rates[engine] / naive_rate:.1f}× naive; "
            + "; ".join(f"{rates[engine] / rate:.2f} of the {name} decode" for name, rate in decode.items())
        )
        print(
            f"  PSNR vs naive: min {min(quality[engine]):.1f} dB, mean "
            f"{sum(quality[engine]) / len(quality[engine]):.1f} dB"
            + (f"; test chart vs exact full-resolution LANCZOS: {chart[engine]:.1f} dB" if engine in chart else "")
        )


if __name__ == "__main__":
    main()
