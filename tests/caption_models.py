"""Tiny captioning models with random (BLIP) or chosen (tagger) weights, built from configs and saved
the way the real ones are published, so `kohya-wrap caption` loads them through its normal path."""

from __future__ import annotations

import warnings
from pathlib import Path

WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "[DEC]",
    "a",
    "woman",
    "red",
    "blue",
    "cat",
    "with",
    "hair",
    "photo",
    "of",
    "the",
    "standing",
    "dog",
    "green",
    "smiling",
    "in",
    "park",
    "white",
    "background",
]

# selected_tags.csv: (name, category); the tagger's weights below make each colour light up its tags
TAGS = [
    ("general", 9),
    ("sensitive", 9),
    ("1girl", 0),
    ("red_hair", 0),
    ("blue_eyes", 0),
    ("green_hair", 0),
    ("^_^", 0),
    ("simple_background", 0),
    ("hatsune_miku", 4),
]


def build_tiny_blip(folder: Path, seed: int = 0) -> Path:
    """BlipForConditionalGeneration (1-layer ViT on 32 px, 1-layer text decoder) + BlipProcessor with a
    24-word WordPiece vocabulary."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    vocab = {word: index for index, word in enumerate(WORDS)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
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
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 16,
        },
        text_config={
            "vocab_size": len(WORDS),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 96,
            "encoder_hidden_size": 32,
            "bos_token_id": 5,
            "pad_token_id": 0,
            "eos_token_id": 3,
            "sep_token_id": 3,
        },
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_tagger(folder: Path, size: int = 32) -> Path:
    """A WD14-shaped tagger exported to ONNX from a tiny torch module: input NHWC BGR 0–255 at
    size×size, output one sigmoid score per tag. Its weights are set by hand so that reddish images
    score high on red_hair, bluish on blue_eyes, greenish on green_hair and hatsune_miku; 1girl and ^_^
    score 0.9 always, simple_background 0.5 and the ratings 0.8 / 0.3."""
    import torch

    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, len(TAGS))

        def forward(self, x):  # x: (batch, H, W, 3), BGR, 0–255
            return torch.sigmoid(self.linear(x.mean(dim=(1, 2)) / 255.0))

    module = Tagger()
    weight = torch.zeros(len(TAGS), 3)
    bias = torch.zeros(len(TAGS))
    names = [name for name, _ in TAGS]
    blue, green, red = 0, 1, 2  # BGR channel order
    for name, channel in (("red_hair", red), ("blue_eyes", blue), ("green_hair", green), ("hatsune_miku", green)):
        weight[names.index(name), channel] = 12.0
        weight[names.index(name), [c for c in (0, 1, 2) if c != channel]] = -6.0
        bias[names.index(name)] = -3.0  # a strong colour, even with white padding → ≥ 0.95; white → 0.05
    logit = lambda p: float(torch.log(torch.tensor(p / (1 - p))))  # noqa: E731
    for name, score in (("1girl", 0.9), ("^_^", 0.9), ("simple_background", 0.5), ("general", 0.8), ("sensitive", 0.3)):
        bias[names.index(name)] = logit(score)
    with torch.no_grad():
        module.linear.weight.copy_(weight)
        module.linear.bias.copy_(bias)
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; it needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            torch.zeros(1, size, size, 3),
            str(folder / "model.onnx"),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )
    lines = ["tag_id,name,category,count"] + [
        f"{index},{name},{category},100" for index, (name, category) in enumerate(TAGS)
    ]
    (folder / "selected_tags.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
