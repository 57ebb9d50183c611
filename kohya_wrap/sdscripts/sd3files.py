"""Which SD3 text encoders a single-file base holds. sd3_train_network.py takes each of CLIP-L, CLIP-G and
T5-XXL from its own file (--clip_l, --clip_g, --t5xxl) or else from the base checkpoint, where it looks for
one key per encoder (library/sd3_utils.py); with neither, it logs "not included in the checkpoint and …
not provided" and goes on without that encoder. The official sd3.5_medium/large.safetensors hold none of
them, so `check` reads the base's safetensors header (a few kB, no weights) and names what is missing."""

from __future__ import annotations

import json
import struct
from pathlib import Path

# (the spec key that gives it, what it is, the key sd-scripts looks for in the base)
SD3_TEXT_ENCODERS = (
    ("model.clip_l", "CLIP-L", "text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight"),
    ("training.clip_g", "CLIP-G", "text_encoders.clip_g.transformer.text_model.embeddings.position_embedding.weight"),
    ("model.t5xxl", "T5-XXL", "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.k.weight"),
)
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


def safetensors_keys(path: Path) -> set[str] | None:
    """The tensor names in a .safetensors file's header; None when it is not one (or unreadable)."""
    try:
        with open(path, "rb") as handle:
            size = struct.unpack("<Q", handle.read(8))[0]
            if not 0 < size <= MAX_HEADER:
                return None
            header = json.loads(handle.read(size))
    except (OSError, struct.error, ValueError):
        return None
    return {key for key in header if key != "__metadata__"} if isinstance(header, dict) else None


def missing_sd3_text_encoders(base: Path, given: set[str]) -> list[tuple[str, str]]:
    """(spec key, encoder) for each SD3 text encoder neither `given` (spec keys set) nor in `base`."""
    if base.suffix.lower() != ".safetensors" or not base.is_file():
        return []
    keys = safetensors_keys(base)
    if keys is None:
        return []
    return [(where, name) for where, name, key in SD3_TEXT_ENCODERS if where not in given and key not in keys]
