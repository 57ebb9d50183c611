#!/usr/bin/env python3
"""How fast is `prep`, and is its output as good as the slow way? Generates a corpus of large JPEG
photos (some EXIF-rotated), then in one run: the naive Pillow loop (open, exif_transpose, LANCZOS
resize of the whole image, centre crop, save), kohya-wrap's prep (the same code `kohya-wrap prep`
runs, on every core), and a bare reduced-scale decode on every core (the machine's practical
ceiling). Prints images/s, the ratios and the PSNR of prep's output against the naive output.

    python scripts/bench_prep.py [--count 100] [--size 4000x3000] [--target 512] [--format jpg]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_corpus(folder: Path, count: int, size: tuple[int, int]) -> None:
    from PIL import Image, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        small = Image.effect_noise((size[0] // 16, size[1] // 16), 60 + index % 30).convert("RGB")
        small = small.filter(ImageFilter.GaussianBlur(2)).resize(size, Image.Resampling.BICUBIC)
        image = Image.merge("RGB", [small.getchannel(0), small.getchannel(1).rotate(180), small.getchannel(2).transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
        grain = Image.effect_noise(size, 40).convert("RGB")  # photo-like fine detail: ~3 MB files, like camera JPEGs
        image = Image.blend(image, grain, 0.25)
        exif = Image.Exif()
        if index % 4 == 0:
            exif[0x0112] = 6
        image.save(folder / f"photo{index:03d}.jpg", quality=90, exif=exif.tobytes())


def naive(source: Path, target: Path, size: int) -> None:
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(Image.open(source)).convert("RGB")
    scale = size / min(image.size)
    image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))), Image.Resampling.LANCZOS)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    image.crop((left, top, left + size, top + size)).save(target, quality=95)


def bare_decode(job: tuple[str, int]) -> int:
    """Decode only, at the same reduced scale prep asks for (≥ 2× the output scale)."""
    from PIL import Image

    path, target = job
    image = Image.open(path)
    scale = 2 * target / min(image.size)
    image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    image.load()
    return image.width


def psnr(a_path: Path, b_path: Path) -> float:
    from PIL import Image, ImageChops

    a, b = Image.open(a_path).convert("RGB"), Image.open(b_path).convert("RGB")
    histogram = ImageChops.difference(a, b).histogram()  # 256 bins per band of |a − b|
    total = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = total / (a.width * a.height * 3)
    return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--target", type=int, default=512)
    parser.add_argument("--format", default="jpg", choices=["jpg", "png", "webp"])
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    from kohya_wrap.dataset.prep import PrepSettings, prep_concept, worker_count

    with tempfile.TemporaryDirectory(prefix="kw-bench-prep-") as temp:
        corpus, naive_out, ours_out = Path(temp) / "corpus", Path(temp) / "naive", Path(temp) / "ours"
        started = time.perf_counter()
        make_corpus(corpus, args.count, (width, height))
        megabytes = sum(p.stat().st_size for p in corpus.iterdir()) / args.count / 1e6
        print(f"corpus: {args.count} JPEGs of {width}×{height} (mean {megabytes:.1f} MB) in {time.perf_counter() - started:.1f} s", flush=True)
        sources = sorted(corpus.iterdir())
        naive_out.mkdir()
        started = time.perf_counter()
        for path in sources:
            naive(path, naive_out / path.name, args.target)
        naive_rate = len(sources) / (time.perf_counter() - started)
        print(f"naive Pillow loop, 1 process:   {naive_rate:6.1f} img/s", flush=True)

        workers = worker_count(len(sources))
        settings = PrepSettings(mode="crop", size=(args.target, args.target), out_format=args.format, min_size=1, max_aspect=10)
        started = time.perf_counter()
        report = prep_concept("bench", corpus, ours_out, settings, {}, 0, workers)
        ours_rate = len(sources) / (time.perf_counter() - started)
        assert not report.rejected, report.rejected
        print(f"kohya-wrap prep, {workers} processes:  {ours_rate:6.1f} img/s", flush=True)

        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            list(pool.imap_unordered(bare_decode, [(str(p), args.target) for p in sources], chunksize=1))
        decode_rate = len(sources) / (time.perf_counter() - started)
        print(f"bare reduced-scale decode, {workers} processes: {decode_rate:6.1f} img/s", flush=True)

        suffix = {"jpg": ".jpg", "png": ".png", "webp": ".webp"}[args.format]
        values = [psnr(naive_out / p.name, ours_out / (p.stem + suffix)) for p in sources]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"prep / naive:         {ours_rate / naive_rate:.1f}×")
    print(f"prep / bare decode:   {ours_rate / decode_rate:.2f}")
    print(f"PSNR prep vs naive:   min {min(values):.1f} dB, mean {sum(values) / len(values):.1f} dB")


if __name__ == "__main__":
    main()
