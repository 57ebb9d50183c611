#!/usr/bin/env python3
"""Does batching pay for BLIP captioning? One run, the same model and images both ways: kohya-wrap's
captioner (the code `kohya-wrap caption --model blip` runs) on batches, and a loop that captions one
image at a time. Prints images/s and the ratio, and checks both give the same captions.

The model has the shape of Salesforce/blip-image-captioning-base (ViT-B/16 at 384 px, a BERT-base text
decoder, 30,524-word vocabulary) with random weights, built from its config: the hub is not reachable
here, and the compute per image is what matters. Random weights rarely emit the end token, so every
caption runs to --max-length tokens in both modes: the same work.

    python scripts/bench_caption.py [--images 16] [--batch 8] [--beams 3] [--max-length 30] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_base_sized_blip(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"] + [f"w{i}" for i in range(30524 - 6)]
    backend = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    tokenizer = BertTokenizerFast(
        tokenizer_object=backend,
        bos_token="[DEC]",
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    config = BlipConfig(
        vision_config={"image_size": 384},
        text_config={"vocab_size": 30524, "bos_token_id": 5, "pad_token_id": 0, "eos_token_id": 3, "sep_token_id": 3},
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 384, "width": 384}), tokenizer=tokenizer
    ).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--beams", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=30)
    parser.add_argument("--model", type=Path, help="a BLIP model folder (default: build a base-sized random one)")
    args = parser.parse_args()
    from PIL import Image, ImageDraw

    from kohya_wrap.caption import BlipCaptioner, BlipOptions

    with tempfile.TemporaryDirectory(prefix="kw-bench-caption-") as temp:
        started = time.perf_counter()
        folder = args.model or build_base_sized_blip(Path(temp) / "blip-base-random")
        print(f"model: {folder} (built/loaded in {time.perf_counter() - started:.1f} s)", flush=True)
        images = []
        for index in range(args.images):
            image = Image.new("RGB", (512, 512), (index * 15 % 256, 120, 200 - index * 9 % 200))
            ImageDraw.Draw(image).ellipse((50 + index * 10, 80, 300 + index * 5, 400), fill=(250, 220, 180))
            images.append(image)
        options = BlipOptions(beams=args.beams, min_length=args.max_length, max_length=args.max_length, device="cpu")
        captioner = BlipCaptioner(folder, options)
        captioner(images[:1])  # warm-up: first-call allocations are not either mode's cost

        started = time.perf_counter()
        looped = [captioner([image])[0] for image in images]
        loop_rate = len(images) / (time.perf_counter() - started)
        print(f"one image at a time:      {loop_rate:6.2f} img/s", flush=True)

        started = time.perf_counter()
        batched = []
        for start in range(0, len(images), args.batch):
            batched += captioner(images[start : start + args.batch])
        batch_rate = len(images) / (time.perf_counter() - started)
        print(f"batches of {args.batch}:            {batch_rate:6.2f} img/s", flush=True)

    import torch

    same = sum(a == b for a, b in zip(looped, batched, strict=True))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} "
        "threads)"
    )
    print(f"batched / one at a time: {batch_rate / loop_rate:.2f}×; identical captions: {same}/{len(images)}")


if __name__ == "__main__":
    main()
