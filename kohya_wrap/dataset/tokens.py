"""How many CLIP tokens a caption takes: SD 1.x/2.x and SDXL read 75 tokens per chunk (sd-scripts'
`max_token_length` allows 150 or 225) and silently drop the rest.

With CLIP's BPE merges (`merges.txt`, from sd-scripts' `tokenizer_cache_dir` or the Hugging Face
cache where sd-scripts' own tokenizer lives) the count is exact, and the BPE is not ours: Hugging
Face's `tokenizers` (Rust) runs CLIP's pre-tokenizer and merges, set up the way transformers'
`CLIPConverter` sets up CLIP's fast tokenizer. The text is cleaned first as transformers' slow
`CLIPTokenizer` (the one sd-scripts runs) does it, NFC, whitespace, Python's `lower()`, but with
`html.unescape` in place of its `ftfy.fix_text`, which kohya-wrap does not depend on: curly quotes,
full-width letters, ligatures and mojibake count as written, not as ftfy repairs them. Past that
step the two agreed on 10,000 of 10,000 awkward captions on CLIP's real merges, where the
hand-written BPE this replaces differed on 375 (no NFC: 180; special tokens cut up: 179), and at
the same speed (scripts/bench_tokens.py, docs/BENCHMARKS.md).

Without a vocabulary the count is a lower bound: every pre-token is at least one BPE token, so a
caption reported too long is too long.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# The lower bound's pre-tokenizer: contractions, letter runs, single digits, runs of other non-space characters.
_PRETOKEN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+", re.IGNORECASE)
# CLIP's own pre-tokenizer, as transformers' CLIPConverter gives it to `tokenizers` (Oniguruma syntax).
_CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_WHITESPACE = re.compile(r"[^\S\x1c-\x1f]+")  # Python's \s less the 4 separators that are not White_Space
_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
_MERGES = 49152 - 256 - 2  # the slow CLIPTokenizer reads no more merges than this
CLIP_REPO = "openai/clip-vit-large-patch14"  # the tokenizer sd-scripts loads for SD 1.x and SDXL


def clean(text: str) -> str:
    """The slow CLIPTokenizer's clean-up before its regex, with HTML entities standing in for ftfy:
    NFC, whitespace runs to one space (the `regex` module's \\s, Unicode White_Space), then `strip()`
    and `lower()`: the same Python calls sd-scripts makes."""
    text = unicodedata.normalize("NFC", html.unescape(html.unescape(text)))
    return _WHITESPACE.sub(" ", text).strip().lower()


def pretokens(text: str) -> list[str]:
    return _PRETOKEN.findall(clean(text))


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's reversible byte → printable character table: the BPE's 256 starting symbols."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(byte) if byte in keep else chr(next(extra)) for byte in range(256)]


def read_merges(vocabulary_file: Path) -> list[tuple[str, str]]:
    """CLIP's BPE merges, read as the slow CLIPTokenizer reads merges.txt (the first line is the
    header; at most 48,894 merges), or from a tokenizer.json's BPE model."""
    text = vocabulary_file.read_text(encoding="utf-8")
    if vocabulary_file.name == "tokenizer.json":  # "a b" strings, or [a, b] pairs since tokenizers 0.20
        lines = [m if isinstance(m, str) else " ".join(m) for m in json.loads(text)["model"]["merges"]][:_MERGES]
    else:
        lines = text.strip().split("\n")[1 : _MERGES + 1]
    return [pair for pair in map(tuple, map(str.split, lines)) if len(pair) == 2]


def clip_tokenizer(merges: list[tuple[str, str]]) -> Tokenizer:
    """CLIP's tokenizer as transformers' CLIPConverter builds it for `tokenizers`, less the normalizer
    (`clean` does that part). The vocabulary is derived from the merges (every byte symbol, its `</w>`
    form, each merge's parts and result): a count never depends on token ids, and no symbol can fall
    out of a vocab.json or tokenizer.json that lacks it (the slow tokenizer never drops one). For
    CLIP's own files it is exactly vocab.json's 49,408 entries."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers
    from tokenizers.models import BPE

    symbols = _byte_symbols()
    tokens = dict.fromkeys(chain(symbols, [s + "</w>" for s in symbols], map("".join, merges), _SPECIAL))
    tokens.update(dict.fromkeys(set(chain.from_iterable(merges)).difference(tokens)))  # parts never built (odd files)
    vocab = dict(zip(tokens, range(len(tokens)), strict=True))
    tokenizer = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
            unk_token="<|endoftext|>",
        )
    )
    # CLIPConverter's normalizer (NFC, whitespace, lowercase) is `clean`, in Python: the slow tokenizer's
    # own calls (Python's `lower()` keeps the final sigma; Oniguruma's \\s is not the `regex` module's),
    # and ByteLevel's own GPT-2 regex is off: it would split nothing CLIP's split left whole. The recipe
    # verbatim counted at 0.63× the old counter's speed; this way at 1.03× (scripts/bench_tokens.py).
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    # "<|endoftext|>" in a caption is one token (the slow one differs only on "X,<|ENDOFTEXT|>": 1 against 3+)
    tokenizer.add_special_tokens(list(_SPECIAL))
    return tokenizer


class ClipTokenCounter:
    """Exact CLIP BPE token counts (without the start/end tokens) from a vocabulary folder's
    merges.txt, or from a tokenizer.json when that is all the folder has."""

    exact = True

    def __init__(self, vocabulary_file: Path) -> None:
        self.tokenizer = clip_tokenizer(read_merges(vocabulary_file))

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(clean(text), add_special_tokens=False))


class PretokenCounter:
    """No vocabulary at hand: a lower bound (one token per word, digit or punctuation run)."""

    exact = False

    def count(self, text: str) -> int:
        return len(pretokens(text))


def find_vocabulary(tokenizer_cache_dir: Path | None) -> Path | None:
    """merges.txt of the CLIP tokenizer sd-scripts will load, if it is on this machine: where its
    `--tokenizer_cache_dir` keeps it (`DIR/openai_clip-vit-large-patch14/`), else the Hugging Face
    cache (never the network); tokenizer.json where a folder has no merges.txt (merges.txt first:
    it is the file sd-scripts' slow tokenizer reads). sd-scripts ignores a model's own tokenizer
    folder, so do we."""
    names = ("merges.txt", "tokenizer.json")
    if tokenizer_cache_dir is not None:
        folder = tokenizer_cache_dir / CLIP_REPO.replace("/", "_")
        for name in names:
            if (folder / name).is_file():
                return folder / name
    try:
        from huggingface_hub import try_to_load_from_cache

        for name in names:
            cached = try_to_load_from_cache(CLIP_REPO, name)
            if isinstance(cached, str):
                return Path(cached)
    except Exception:  # noqa: BLE001 - a broken cache is the same as no cache here
        return None
    return None


def counter_for(tokenizer_cache_dir: Path | None) -> ClipTokenCounter | PretokenCounter:
    vocabulary = find_vocabulary(tokenizer_cache_dir)
    if vocabulary is None:
        return PretokenCounter()
    try:
        return ClipTokenCounter(vocabulary)
    except Exception:  # noqa: BLE001 - unreadable or malformed files (tokenizers raises plain Exception): no vocabulary
        return PretokenCounter()


def token_pattern(token: str) -> re.Pattern[str]:
    """The trigger token as a word, in any case: how `lint` and `tags stats` look for it in a caption."""
    return re.compile(r"(?<!\w)" + re.escape(token) + r"(?!\w)", re.IGNORECASE)
