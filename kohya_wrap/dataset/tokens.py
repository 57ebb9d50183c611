"""How many CLIP tokens a caption takes: SD 1.x/2.x and SDXL read 75 tokens per chunk (sd-scripts'
`max_token_length` allows 150 or 225) and silently drop the rest.

With CLIP's BPE merges (`merges.txt`, from sd-scripts' `tokenizer_cache_dir` or the Hugging Face
cache where sd-scripts' own tokenizer lives) the count is exact: CLIP's byte-level BPE, written here
from its published description (lower-case, split into words / single digits / punctuation runs,
merge byte pairs by rank). Without a vocabulary the count is a lower bound: every pre-token is at
least one BPE token, so a caption reported too long is too long.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from pathlib import Path

# CLIP's pre-tokenizer: contractions, letter runs, single digits, runs of other non-space characters.
_PRETOKEN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+", re.IGNORECASE)
CLIP_REPO = "openai/clip-vit-large-patch14"  # the tokenizer sd-scripts loads for SD 1.x and SDXL


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for byte in range(256):
        if byte in keep:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def pretokens(text: str) -> list[str]:
    text = html.unescape(html.unescape(text))
    return _PRETOKEN.findall(" ".join(text.split()).lower())


class ClipTokenCounter:
    """Exact CLIP BPE token counts (without the start/end tokens) from a vocabulary folder's files."""

    exact = True

    def __init__(self, merges_file: Path) -> None:
        lines = merges_file.read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split()) for line in lines[1:] if line.strip() and not line.startswith("#")]
        self.ranks = {pair: rank for rank, pair in enumerate(merges) if len(pair) == 2}
        self.byte_table = _bytes_to_unicode()

    @lru_cache(maxsize=65536)
    def _bpe(self, token: str) -> int:
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return len(word)

    def count(self, text: str) -> int:
        return sum(self._bpe("".join(self.byte_table[b] for b in piece.encode("utf-8"))) for piece in pretokens(text))


class PretokenCounter:
    """No vocabulary at hand: a lower bound (one token per word, digit or punctuation run)."""

    exact = False

    def count(self, text: str) -> int:
        return len(pretokens(text))


def find_vocabulary(tokenizer_cache_dir: Path | None) -> Path | None:
    """merges.txt of the CLIP tokenizer sd-scripts will load, if it is on this machine: where its
    `--tokenizer_cache_dir` keeps it (`DIR/openai_clip-vit-large-patch14/`), else the Hugging Face
    cache (never the network). sd-scripts ignores a model's own tokenizer folder, so do we."""
    if tokenizer_cache_dir is not None:
        candidate = tokenizer_cache_dir / CLIP_REPO.replace("/", "_") / "merges.txt"
        if candidate.is_file():
            return candidate
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(CLIP_REPO, "merges.txt")
    except Exception:  # noqa: BLE001 - a broken cache is the same as no cache here
        return None
    return Path(cached) if isinstance(cached, str) else None


def counter_for(tokenizer_cache_dir: Path | None) -> ClipTokenCounter | PretokenCounter:
    merges = find_vocabulary(tokenizer_cache_dir)
    if merges is not None:
        try:
            return ClipTokenCounter(merges)
        except (OSError, UnicodeDecodeError):
            pass
    return PretokenCounter()


def token_pattern(token: str) -> re.Pattern[str]:
    """The trigger token as a word, in any case: how `lint` and `tags stats` look for it in a caption."""
    return re.compile(r"(?<!\w)" + re.escape(token) + r"(?!\w)", re.IGNORECASE)
