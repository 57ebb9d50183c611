#!/usr/bin/env python3
"""Build a tiny, randomly initialised SD1.5 or SDXL model folder that sd-scripts accepts offline.

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

SDXL (``--family sdxl``, for ``sdxl_train_network.py``)
------------------------------------------------------
sd-scripts' *single-file* SDXL loader (``sdxl_model_util.load_models_from_sdxl_checkpoint``)
hard-codes every part: the UNet (``sdxl_original_unet.py``), CLIP-L (12 layers), OpenCLIP bigG
(32 layers, 1280 wide) and the full VAE -- ~3.5 B parameters, ~7 GB in fp16 and 14 GB in fp32 once
loaded.  Its *diffusers-folder* loader (``sdxl_train_util._load_target_model``) takes the text
encoders and the VAE as the folder has them and converts only the UNet to its hard-coded shape.
So the SDXL model is a diffusers folder:

* **UNet** -- full SDXL base shape (~2.57 B parameters), random, fp16, written tensor by tensor in
  safetensors shards of ~500 MB (diffusers then loads it shard by shard, so loading never holds the
  whole file next to the model; ~5.1 GB on disk).
* **Text encoder 1** -- ``CLIPTextModel``, hidden size 768 and 11 layers: sd-scripts takes
  ``hidden_states[11]`` of it and concatenates it with text encoder 2's penultimate layer into the
  UNet's 2048-wide context (768 + 1280); the MLPs are narrow.
* **Text encoder 2** -- ``CLIPTextModelWithProjection``, hidden size and projection 1280 (the pooled
  output joins the size embeddings in the UNet's 2816-wide ``label_emb``), 2 layers.
* **VAE** -- the same tiny 4-block ``AutoencoderKL`` as SD1.5's; **scheduler** -- SDXL's Euler config.
* **Tokenizers** -- the byte-level tokenizer above, saved as ``tokenizer`` and ``tokenizer_2`` and, with
  ``--tokenizer-cache DIR``, as ``DIR/openai_clip-vit-large-patch14`` and
  ``DIR/laion_CLIP-ViT-bigG-14-laion2B-39B-b160k`` (the two hub tokenizers sdxl_train_network.py loads).

It runs INSIDE sd-scripts' virtual environment (which has torch, diffusers and transformers), so it
imports only the standard library at module level and never imports kohya_wrap; `kohya-wrap demo`
runs it, and so do the tests::

    <sd-scripts venv python> kohya_wrap/sdscripts/tinymodel.py OUT_DIR [--family sdxl] [--tokenizer-cache D] [--seed N]

Idempotent: the model is built in a temporary sibling folder, a marker file is written last and
the folder is then renamed to OUT_DIR; when OUT_DIR already holds the marker, the model is not
rebuilt.  The tokenizer cache entry is likewise written only when it is missing.
SD1.5: ~25 s and ~4.5 GB of memory (peak RSS) on a 2-core CPU; the folder is ~1.7 GB.
SDXL: ~40 s and ~1.1 GB of memory (peak RSS: one UNet tensor at a time); the folder is ~5.3 GB (UNet 5.1 GB).
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
MARKERS = {"sd15": MARKER, "sdxl": ".tiny-sdxl-complete"}
TOKENIZER_CACHE_NAME = "openai_clip-vit-large-patch14"  # sd-scripts: hub id with "/" -> "_"
# the hub tokenizers each family's training script loads (sdxl_train_util.TOKENIZER1_PATH, TOKENIZER2_PATH)
TOKENIZER_CACHE_NAMES = {
    "sd15": (TOKENIZER_CACHE_NAME,),
    "sdxl": (TOKENIZER_CACHE_NAME, "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"),
}
SHARD_BYTES = 500 * 2**20
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


def tiny_vae(sample_size: int, **config):
    """4 blocks of 32 channels: still the factor-8 downsampling and 4 latent channels sd-scripts expects."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
        act_fn="silu",
        latent_channels=4,
        norm_num_groups=32,
        sample_size=sample_size,
        **config,
    )


def build_models(seed: int):
    import torch
    from diffusers import PNDMScheduler, UNet2DConditionModel
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

    vae = tiny_vae(512)

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


# SDXL base 1.0's UNet as diffusers' UNet2DConditionModel takes it: the shape sdxl_original_unet.py hard-codes.
SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "upcast_attention": False,
}


def _random_tensor(name: str, shape: tuple[int, ...], generator):
    """PyTorch's default init, near enough: weights uniform in ±1/sqrt(fan_in), norm scales 1, biases 0."""
    import torch

    tensor = torch.empty(shape, dtype=torch.float32)
    if name.endswith(".weight") and len(shape) >= 2:
        fan_in = 1
        for size in shape[1:]:
            fan_in *= size
        bound = fan_in**-0.5
        tensor.uniform_(-bound, bound, generator=generator)
    elif name.endswith(".weight"):
        tensor.fill_(1.0)
    else:
        tensor.zero_()
    return tensor.to(torch.float16)


def write_sharded_safetensors(
    folder: Path, stem: str, shapes: dict, make_tensor, shard_bytes: int = SHARD_BYTES
) -> int:
    """Write fp16 tensors named and shaped by `shapes` as diffusers-style safetensors shards
    (STEM-0000i-of-0000n.safetensors + STEM.safetensors.index.json), each tensor made by
    make_tensor(name, shape) just before it is written: memory holds one tensor, never the model."""
    shards: list[list[tuple[str, tuple[int, ...], int]]] = [[]]
    size = 0
    for name, shape in shapes.items():
        count = 1
        for dim in shape:
            count *= dim
        nbytes = count * 2
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, tuple(shape), nbytes))
        size += nbytes
    total = 0
    weight_map = {}
    for index, shard in enumerate(shards, start=1):
        filename = f"{stem}-{index:05d}-of-{len(shards):05d}.safetensors"
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, shape, nbytes in shard:
            header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[name] = filename
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
        with open(folder / filename, "wb") as f:
            f.write(len(raw).to_bytes(8, "little"))
            f.write(raw)
            for name, shape, nbytes in shard:
                tensor = make_tensor(name, shape)
                data = tensor.contiguous().view(-1).numpy()
                assert data.nbytes == nbytes, name
                f.write(data.tobytes())
        total += offset
    index_file = folder / f"{stem}.safetensors.index.json"
    index_file.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    return total


def save_sdxl(model_dir: Path, tokenizer, seed: int) -> None:
    """The SDXL diffusers folder: full-size random UNet, small text encoders and VAE (see the module doc)."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    model_dir.mkdir(parents=True)
    with init_empty_weights():
        unet = UNet2DConditionModel(**SDXL_UNET)
    unet.save_config(model_dir / "unet")
    shapes = {name: tuple(tensor.shape) for name, tensor in unet.state_dict().items()}
    del unet
    generator = torch.Generator().manual_seed(seed)
    write_sharded_safetensors(
        model_dir / "unet", "diffusion_pytorch_model", shapes, lambda n, s: _random_tensor(n, s, generator)
    )

    common = dict(
        vocab_size=514,
        max_position_embeddings=MAX_LENGTH,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )
    # sd-scripts reads hidden_states[11] of text encoder 1: it needs 11 layers
    te1 = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=256,
            projection_dim=768,
            num_hidden_layers=11,
            num_attention_heads=12,
            hidden_act="quick_gelu",
            **common,
        )
    )
    te2 = CLIPTextModelWithProjection(
        CLIPTextConfig(
            hidden_size=1280,
            intermediate_size=256,
            projection_dim=1280,
            num_hidden_layers=2,
            num_attention_heads=20,
            hidden_act="gelu",
            **common,
        )
    )
    vae = tiny_vae(1024, scaling_factor=0.13025)  # SDXL's VAE scaling
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    te1.save_pretrained(model_dir / "text_encoder", safe_serialization=True)
    te2.save_pretrained(model_dir / "text_encoder_2", safe_serialization=True)
    vae.save_pretrained(model_dir / "vae", safe_serialization=True)
    scheduler.save_pretrained(model_dir / "scheduler")
    tokenizer.save_pretrained(model_dir / "tokenizer")
    tokenizer.save_pretrained(model_dir / "tokenizer_2")
    index = {
        "_class_name": "StableDiffusionXLPipeline",
        "force_zeros_for_empty_prompt": True,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (model_dir / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def _is_complete(out_dir: Path, family: str = "sd15") -> bool:
    return (out_dir / MARKERS[family]).is_file()


def build(out_dir: Path, tokenizer_cache: Path | None, seed: int, family: str = "sd15") -> None:
    out_dir = out_dir.resolve()
    marker = MARKERS[family]
    entries = [tokenizer_cache.resolve() / name for name in TOKENIZER_CACHE_NAMES[family]] if tokenizer_cache else []

    need_model = not _is_complete(out_dir, family)
    missing_entries = [entry for entry in entries if not entry.exists()]
    if not need_model and not missing_entries:
        print(f"{out_dir}: already complete ({marker} present); nothing to do")
        return

    if need_model and out_dir.exists():
        if any(out_dir.iterdir()):
            sys.exit(f"error: {out_dir} exists, is not empty and has no {marker}; remove it first")
        out_dir.rmdir()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".tiny-{family}-", dir=out_dir.parent) as tmp:
        work = Path(tmp)
        tokenizer = build_tokenizer(work)

        if need_model:
            model_tmp = work / "model"
            if family == "sdxl":
                save_sdxl(model_tmp, tokenizer, seed)
            else:
                _save_sd15(model_tmp, tokenizer, seed)
            info = {
                "what": f"tiny {family} test model with random weights, built by kohya-wrap's sdscripts/tinymodel.py",
                "seed": seed,
            }
            (model_tmp / marker).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            os.replace(model_tmp, out_dir)
            print(f"built {out_dir}")

        for entry in missing_entries:
            cache_tmp = work / f"tokenizer-cache-{entry.name}"
            tokenizer.save_pretrained(cache_tmp)
            entry.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(cache_tmp), str(entry))
            print(f"wrote tokenizer cache {entry}")


def _save_sd15(model_dir: Path, tokenizer, seed: int) -> None:
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
    pipe.save_pretrained(model_dir, safe_serialization=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path, help="diffusers-format model folder to create")
    p.add_argument(
        "--tokenizer-cache",
        type=Path,
        default=None,
        help="also save the tokenizer as DIR/<hub id with / as _> for each hub tokenizer the family's script loads "
        "(pass DIR to sd-scripts' --tokenizer_cache_dir)",
    )
    p.add_argument("--seed", type=int, default=0, help="torch seed for the random weights (default 0)")
    p.add_argument("--family", choices=sorted(MARKERS), default="sd15", help="model family (default sd15)")
    args = p.parse_args(argv)
    build(args.out_dir, args.tokenizer_cache, args.seed, args.family)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
