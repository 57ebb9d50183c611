#!/usr/bin/env python3
"""Build a tiny, randomly initialised SD1.5 model folder that sd-scripts accepts offline.

Why this exists
---------------
kohya-wrap's end-to-end tests drive the real ``train_network.py`` of kohya-ss/sd-scripts.
A real SD1.5 checkpoint is several GB, must be downloaded, and is far too slow on a CPU-only
test machine.  Nothing here needs a *useful* model -- only one that sd-scripts will load,
train for a few steps and save a LoRA from.  This script makes such a model from random
weights, with no network access:

* **UNet** -- full SD1.5 shape (block channels 320/640/1280/1280, ~860M parameters).
  sd-scripts rebuilds the UNet in ``library/original_unet.py`` with hard-coded channels and
  only reads ``sample_size``, ``attention_head_dim``, ``cross_attention_dim``,
  ``use_linear_projection`` and ``upcast_attention`` from the config, so a smaller UNet
  fails to load.  Saved in fp16 (~1.7 GB) to halve the disk size.
* **Text encoder** -- a tiny ``CLIPTextModel``: hidden size 768 (must equal the UNet's
  ``cross_attention_dim``), 2 layers, 77 positions.
* **VAE** -- a tiny ``AutoencoderKL``: 4 blocks of 32 channels (so still a factor-8
  downsampling, as sd-scripts assumes) and 4 latent channels.
* **Scheduler** -- the SD1.5 PNDM scheduler config (scaled-linear betas 0.00085..0.012).
* **Tokenizer** -- a byte-level ``CLIPTokenizer``: the 256 byte symbols, their ``</w>``
  forms, ``<|startoftext|>`` and ``<|endoftext|>``, and a merges file holding only its
  ``#version`` header (so every word is split into bytes).  sd-scripts never reads the
  tokenizer from the model folder: it loads ``openai/clip-vit-large-patch14`` from the
  Hugging Face hub unless ``--tokenizer_cache_dir D`` holds ``D/openai_clip-vit-large-patch14``.
  So the tokenizer is saved both to ``OUT_DIR/tokenizer`` and, with ``--tokenizer-cache DIR``,
  to ``DIR/openai_clip-vit-large-patch14``; pass ``--tokenizer_cache_dir DIR`` to sd-scripts.

The result is a diffusers-format folder: pass it as ``--pretrained_model_name_or_path``.

It runs INSIDE sd-scripts' virtual environment (which has torch, diffusers and transformers), so it
imports only the standard library at module level and never imports kohya_wrap; `kohya-wrap demo`
runs it, and so do the tests::

    <sd-scripts venv python> kohya_wrap/sdscripts/tinymodel.py OUT_DIR [--tokenizer-cache DIR] [--seed N]

Idempotent: the model is built in a temporary sibling folder, a marker file is written last and
the folder is then renamed to OUT_DIR; when OUT_DIR already holds the marker, the model is not
rebuilt.  The tokenizer cache entry is likewise written only when it is missing.
Building takes ~25 s and ~4.5 GB of memory (peak RSS) on a 2-core CPU; the folder is ~1.7 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

MARKER = ".tiny-sd15-complete"
TOKENIZER_CACHE_NAME = "openai_clip-vit-large-patch14"  # sd-scripts: hub id with "/" -> "_"
MAX_LENGTH = 77
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """The GPT-2/CLIP reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def build_tokenizer(work: Path):
    """A byte-level CLIPTokenizer: 514 tokens, no merges."""
    from transformers import CLIPTokenizer

    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    src = work / "tokenizer-src"
    src.mkdir(parents=True)
    (src / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (src / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tok = CLIPTokenizer(
        vocab_file=str(src / "vocab.json"),
        merges_file=str(src / "merges.txt"),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        model_max_length=MAX_LENGTH,
    )
    return tok


def build_models(seed: int):
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)

    # SD1.5 UNet, exactly the shape sd-scripts' original_unet.py hard-codes.
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        center_input_sample=False,
        flip_sin_to_cos=True,
        freq_shift=0,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        downsample_padding=1,
        mid_block_scale_factor=1,
        act_fn="silu",
        norm_num_groups=32,
        norm_eps=1e-5,
        cross_attention_dim=768,
        attention_head_dim=8,
        use_linear_projection=False,
        upcast_attention=False,
    )
    unet = unet.to(torch.float16)

    text_config = CLIPTextConfig(
        vocab_size=514,
        hidden_size=768,
        intermediate_size=1536,
        projection_dim=768,
        num_hidden_layers=2,
        num_attention_heads=12,
        max_position_embeddings=MAX_LENGTH,
        hidden_act="quick_gelu",
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )
    text_encoder = CLIPTextModel(text_config)

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
        act_fn="silu",
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
    )

    # The scheduler SD1.5 ships with (sd-scripts builds its own DDPM scheduler for training).
    scheduler = PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
        trained_betas=None,
    )
    return unet, text_encoder, vae, scheduler


def _is_complete(out_dir: Path) -> bool:
    return (out_dir / MARKER).is_file()


def build(out_dir: Path, tokenizer_cache: Path | None, seed: int) -> None:
    out_dir = out_dir.resolve()
    cache_entry = tokenizer_cache.resolve() / TOKENIZER_CACHE_NAME if tokenizer_cache else None

    need_model = not _is_complete(out_dir)
    need_cache = cache_entry is not None and not cache_entry.exists()
    if not need_model and not need_cache:
        print(f"{out_dir}: already complete ({MARKER} present); nothing to do")
        return

    if need_model and out_dir.exists():
        if any(out_dir.iterdir()):
            sys.exit(f"error: {out_dir} exists, is not empty and has no {MARKER}; remove it first")
        out_dir.rmdir()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tiny-sd15-", dir=out_dir.parent) as tmp:
        work = Path(tmp)
        tokenizer = build_tokenizer(work)

        if need_model:
            from diffusers import StableDiffusionPipeline

            unet, text_encoder, vae, scheduler = build_models(seed)
            pipe = StableDiffusionPipeline(
                vae=vae,
                text_encoder=text_encoder,
                tokenizer=tokenizer,
                unet=unet,
                scheduler=scheduler,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
            model_tmp = work / "model"
            pipe.save_pretrained(model_tmp, safe_serialization=True)
            info = {
                "what": "tiny SD1.5 test model with random weights, built by kohya-wrap scripts/build_tiny_sd15.py",
                "seed": seed,
            }
            (model_tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            os.replace(model_tmp, out_dir)
            print(f"built {out_dir}")

        if need_cache:
            cache_tmp = work / "tokenizer-cache"
            tokenizer.save_pretrained(cache_tmp)
            cache_entry.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(cache_tmp), str(cache_entry))
            print(f"wrote tokenizer cache {cache_entry}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path, help="diffusers-format model folder to create")
    p.add_argument(
        "--tokenizer-cache",
        type=Path,
        default=None,
        help=f"also save the tokenizer as DIR/{TOKENIZER_CACHE_NAME} (pass DIR to sd-scripts' --tokenizer_cache_dir)",
    )
    p.add_argument("--seed", type=int, default=0, help="torch seed for the random weights (default 0)")
    args = p.parse_args(argv)
    build(args.out_dir, args.tokenizer_cache, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
