#!/usr/bin/env python3
"""CLIP token counting: kohya-wrap's counter (Hugging Face `tokenizers`) against the hand-written
byte-level BPE it replaced, in the same run, on ~10,000 generated captions.

    python scripts/bench_tokens.py [--captions 10000] [--rounds 5] [--vocab DIR | --open-clip PATH]
                                   [--reference-python /path/to/sd-scripts/venv/bin/python]

The vocabulary: `--vocab` (a folder with merges.txt, or the file), else `--open-clip` (open_clip's
wheel or its `bpe_simple_vocab_16e6.txt.gz`, which holds CLIP's real merges: `pip download
open_clip_torch --no-deps`), else CLIP's tokenizer in the Hugging Face cache, else a stand-in BPE
trained here with `tokenizers` on the captions (smaller than CLIP's, so the timings are less telling).

Prints the cost of building each counter, tokens/s for each (a fresh counter per round: cold caches,
as `lint` meets them) and the ratio, also for `tokenizers` set up with transformers' CLIPConverter
recipe to the letter, how often they agree, the import cost and installed size of
`tokenizers`, and, with `--reference-python` (a venv with transformers 4.x, such as sd-scripts' own),
agreement with transformers' slow CLIPTokenizer: as sd-scripts runs it (with ftfy when installed) and
with its ftfy step replaced by the counter's clean-up, which isolates the pre-tokenizer and the BPE.
"""

from __future__ import annotations

import argparse
import gzip
import html
import json
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from functools import lru_cache
from importlib.metadata import distribution
from pathlib import Path

from kohya_wrap.dataset.tokens import (
    ClipTokenCounter,
    clean,
    clip_tokenizer,
    find_vocabulary,
    read_merges,
)

CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""  # CLIP's pre-tokenizer

# ---------------------------------------------------------------- the old, hand-written counter (kept here only)
_OLD_PRETOKEN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+", re.IGNORECASE)


def _bytes_to_unicode() -> dict[int, str]:
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for byte in range(256):
        if byte in keep:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def _old_pretokens(text: str) -> list[str]:
    text = html.unescape(html.unescape(text))
    return _OLD_PRETOKEN.findall(" ".join(text.split()).lower())


class OldClipTokenCounter:
    """kohya_wrap/dataset/tokens.py's ClipTokenCounter before `tokenizers`, verbatim."""

    exact = True

    def __init__(self, merges_file: Path) -> None:
        lines = merges_file.read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split()) for line in lines[1:] if line.strip() and not line.startswith("#")]
        self.ranks = {pair: rank for rank, pair in enumerate(merges) if len(pair) == 2}
        self.byte_table = _bytes_to_unicode()

    @lru_cache(maxsize=65536)  # noqa: B019 - as it was; the cache is cleared before each round
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
        pieces = _old_pretokens(text)
        return sum(self._bpe("".join(self.byte_table[b] for b in piece.encode("utf-8"))) for piece in pieces)


class VerbatimCounter:
    """The new counter with transformers' CLIPConverter recipe to the letter: the normalizer in Rust (NFC,
    whitespace, lowercase) and ByteLevel's own GPT-2 regex after CLIP's split. The counter moved the first
    to Python and dropped the second; this measures what that is worth."""

    def __init__(self, merges_file: Path) -> None:
        from tokenizers import Regex, normalizers, pre_tokenizers

        self.tokenizer = clip_tokenizer(read_merges(merges_file))
        self.tokenizer.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
        )
        self.tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(html.unescape(html.unescape(text)), add_special_tokens=False))


# ---------------------------------------------------------------- captions
TAGS = (
    "1girl 2boys solo long_hair short_hair blue_eyes smile looking_at_viewer blush open_mouth brown_hair "
    "shirt skirt thighhighs holding white_background simple_background upper_body full_body outdoors "
    "night_sky cherry_blossoms hatsune_miku score_9 score_8_up rating:safe 1990s_(style) absurdres highres "
    "bangs hair_between_eyes school_uniform serafuku wolf_ears :d ;) ^_^ >_< o_o x_x :3 @_@ "
    "masterpiece best_quality very_aesthetic newest sks_person ohwx_man photo_(medium) depth_of_field"
).split()
WORDS = (
    "a an the photo of woman man dog cat standing sitting in on at with wearing red blue green dress jacket "
    "park street city beach mountain forest sunset sunrise portrait close-up shot lighting cinematic "
    "detailed realistic painting drawing illustration background smiling happy old young holding cup "
    "reading book window rain snow car bicycle it's don't she'll we're they've I'm you'd"
).split()
# The corners: accents (composed and not), Greek, Cyrillic, CJK, full-width, ligatures, mojibake, numerics
# that are not digits, emoji (ZWJ, variation selectors, flags), HTML entities, curly quotes, control characters.
ODD = [
    "café",
    "naïve",
    "Ñandú",
    "straße",
    "İstanbul",
    "ΟΔΟΣ",
    "Ελληνικά",
    "Москва",
    "ПРИВЕТ",
    "東京の夜景",
    "中文标签",
    "한국어",
    "日本語",
    "ｆｕｌｌｗｉｄｔｈ",
    "ＡＢＣ１２３",
    "ﬁne",
    "cafe\u0301",
    "x²",
    "½",
    "Ⅻ",
    "١٢٣",
    "①②",
    "🔥",
    "👩‍🎤",
    "❤️",
    "🇯🇵",
    "😀😀",
    "&amp;",
    "&quot;hi&quot;",
    "&#39;",
    "&lt;3",
    "&amp;amp;",
    "&nbsp;",
    "AT&T",
    "R&amp;B",
    "it’s",
    "“quoted”",
    "—",
    "…",
    "!!!",
    "...",
    "--",
    "=>",
    "(((",
    "))):",
    "@#$%",
    "~~~",
    "1024x768",
    "3.14",
    "2023",
    "v1.5",
    "#hashtag",
    "@user",
    "e-mail",
    "C++",
    "_under_",
    "cafÃ©",
    "\u200b",
    "\x00",
    "a\u00adb",
    "Ǆ",
    "ǅungla",
    "ΣΊΣΥΦΟΣ",
    "ß",
    "ﬀ",
    "K",
    "Å",
    "\u0130",
    "<|endoftext|>",
]
SPACES = [" ", " ", " ", "  ", "\t", "\n", " \n ", "\u3000", "\xa0", "\r\n"]
SYLLABLES = "ka ri sa me ma to no shi ro yu ki na ta ha ru mi ko ne be la vor xen dra quil tes pon gar fel wyn".split()


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def captions(n: int, seed: int = 0) -> list[str]:
    """A quarter each: booru tag lists (with made-up character names, so the BPE caches miss),
    sentences, weighted prompts, and text full of CLIP's corner cases with odd whitespace."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            tags = rng.sample(TAGS, rng.randint(3, 30))
            tags += [f"{_name(rng)}_{_name(rng)}" for _ in range(rng.randint(0, 3))]
            text = ", ".join(t.replace("_", " ") if rng.random() < 0.5 else t for t in tags)
        elif kind == 1:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 40))).capitalize() + rng.choice(".!?")
        elif kind == 2:
            text = ", ".join(
                f"({rng.choice(TAGS)}:{rng.uniform(0.5, 1.5):.1f})" if rng.random() < 0.3 else rng.choice(TAGS + WORDS)
                for _ in range(rng.randint(3, 20))
            )
        else:
            text = "".join(rng.choice(ODD + WORDS + TAGS) + rng.choice(SPACES) for _ in range(rng.randint(2, 25)))
        if rng.random() < 0.2:
            text = rng.choice(SPACES) + text.upper() if rng.random() < 0.3 else "  " + text + rng.choice(SPACES)
        out.append(text)
    return out


# ---------------------------------------------------------------- vocabularies
def write_clip_vocab(merges: list[str], folder: Path) -> Path:
    """CLIP's vocab.json and merges.txt (the Hugging Face layout) from its merges, as open_clip builds them."""
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    ids = json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False)
    (folder / "vocab.json").write_text(ids, encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder / "merges.txt"


def from_open_clip(path: Path, folder: Path) -> Path:
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            data = wheel.read("open_clip/bpe_simple_vocab_16e6.txt.gz")
    else:
        data = path.read_bytes()
    merges = gzip.decompress(data).decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]  # as open_clip and CLIP read it
    return write_clip_vocab(merges, folder)


def trained_stand_in(texts: list[str], folder: Path) -> Path:
    """No CLIP vocabulary: a byte-level BPE with CLIP's pre-tokenizer and `</w>` suffix, trained on the captions."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers, trainers
    from tokenizers.models import BPE

    tokenizer = Tokenizer(BPE(end_of_word_suffix="</w>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=20000,
        end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([clean(t) for t in texts], trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.model.save(str(folder))
    merges = [line for line in (folder / "merges.txt").read_text(encoding="utf-8").split("\n")[1:] if line]
    return write_clip_vocab(merges, folder)


# ---------------------------------------------------------------- measurements
REFERENCE = r"""
import html, json, sys, unicodedata
from transformers import CLIPTokenizer
folder, texts = sys.argv[1], json.load(open(sys.argv[2], encoding="utf-8"))
tokenizer = CLIPTokenizer(f"{folder}/vocab.json", f"{folder}/merges.txt")
out = {"mode": "ftfy" if tokenizer.fix_text is not None else "BasicTokenizer (no ftfy)"}
out["as_is"] = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
tokenizer.fix_text = lambda t: unicodedata.normalize("NFC", html.unescape(html.unescape(t)))
out["same_clean"] = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
import transformers
out["versions"] = f"transformers {transformers.__version__}"
json.dump(out, sys.stdout)
"""


def reference_counts(python: str, folder: Path, texts: list[str]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8", delete=False) as handle:
        json.dump(texts, handle)
    try:
        result = subprocess.run(
            [python, "-c", REFERENCE, str(folder), handle.name], capture_output=True, text=True, check=True
        )
    finally:
        Path(handle.name).unlink()
    return json.loads(result.stdout)


def import_cost() -> float:
    """Milliseconds `import tokenizers` adds, from `python -X importtime` (best of 5 fresh interpreters)."""
    best = float("inf")
    for _ in range(5):
        command = [sys.executable, "-X", "importtime", "-c", "import tokenizers"]
        err = subprocess.run(command, capture_output=True, text=True, check=True).stderr
        line = [row for row in err.splitlines() if row.rstrip().endswith("| tokenizers")][-1]
        best = min(best, int(line.split("|")[1]) / 1000)
    return best


def installed_size() -> float:
    dist = distribution("tokenizers")
    return sum(f.size or 0 for f in dist.files or []) / 1e6


def agreement(a: list[int], b: list[int], texts: list[str]) -> str:
    differ = [i for i in range(len(texts)) if a[i] != b[i]]
    where = f" (first: {texts[differ[0]]!r:.70})" if differ else ""
    return f"{len(texts) - len(differ):,}/{len(texts):,}{where}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--vocab", type=Path, help="a folder with CLIP's merges.txt (and vocab.json), or the file")
    parser.add_argument("--open-clip", type=Path, help="open_clip_torch's wheel, or its bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument(
        "--reference-python", help="a python with transformers 4.x (the slow CLIPTokenizer), e.g. sd-scripts' venv"
    )
    args = parser.parse_args()
    texts = captions(args.captions)
    with tempfile.TemporaryDirectory(prefix="bench_tokens_") as scratch:
        run(args, texts, Path(scratch))


def run(args: argparse.Namespace, texts: list[str], scratch: Path) -> None:
    if args.vocab:
        merges, source = (args.vocab / "merges.txt" if args.vocab.is_dir() else args.vocab), f"{args.vocab}"
    elif args.open_clip:
        merges, source = from_open_clip(args.open_clip, scratch / "clip"), f"CLIP's merges from {args.open_clip.name}"
    elif (found := find_vocabulary(None)) is not None and found.name == "merges.txt":
        merges, source = found, f"Hugging Face cache: {found}"
    else:
        merges = trained_stand_in(texts, scratch / "stand-in")
        source = "a stand-in BPE trained here (no CLIP vocabulary found)"
    n_merges = len(merges.read_text(encoding="utf-8").strip().split("\n")) - 1

    kinds = {"old": OldClipTokenCounter, "new": ClipTokenCounter, "verbatim": VerbatimCounter}
    builds: dict[str, list[float]] = {name: [] for name in kinds}
    counts: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(args.rounds):
        for name, kind in kinds.items():
            OldClipTokenCounter._bpe.cache_clear()
            start = time.perf_counter()
            counter = kind(merges)
            built = time.perf_counter()
            for text in texts:
                counter.count(text)
            builds[name].append(built - start)
            counts[name].append(time.perf_counter() - built)
    old_counter = OldClipTokenCounter(merges)
    old_counts = [old_counter.count(t) for t in texts]
    new_counter = ClipTokenCounter(merges)
    new_counts = [new_counter.count(t) for t in texts]
    verbatim_counter = VerbatimCounter(merges)
    verbatim_counts = [verbatim_counter.count(t) for t in texts]
    total = sum(new_counts)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(
        f"machine: {platform.machine()}, {platform.processor() or '?'}, python {platform.python_version()}, "
        f"tokenizers {distribution('tokenizers').version}"
    )
    print(f"vocabulary: {source} ({n_merges:,} merges)")
    print(
        f"captions: {len(texts):,} ({sum(map(len, texts)) / len(texts):.0f} characters, "
        f"{total / len(texts):.1f} tokens on average); {args.rounds} interleaved rounds, medians"
    )
    labels = {"old": "hand-written BPE (old)", "new": "tokenizers (new)", "verbatim": "tokenizers, CLIPConverter"}
    for name, label in labels.items():
        per_caption = med(counts[name]) * 1e6 / len(texts)
        print(
            f"{label:24} build {med(builds[name]) * 1e3:6.1f} ms   "
            f"count {total / med(counts[name]):>10,.0f} tokens/s ({per_caption:.1f} µs/caption)"
        )
    print(
        f"ratio new / old: count {med(counts['old']) / med(counts['new']):.2f}× the throughput, "
        f"build {med(builds['new']) / med(builds['old']):.2f}× the time; "
        f"CLIPConverter's recipe / old: count {med(counts['old']) / med(counts['verbatim']):.2f}×"
    )
    print(f"old and new agree on {agreement(old_counts, new_counts, texts)} captions")
    print(f"CLIPConverter's recipe and new agree on {agreement(verbatim_counts, new_counts, texts)} captions")
    print(
        f"tokenizers: import {import_cost():.1f} ms (python -X importtime, cumulative, best of 5), "
        f"installed {installed_size():.1f} MB"
    )
    if args.reference_python:
        folder = merges.parent
        if not (folder / "vocab.json").is_file():
            raise SystemExit(f"--reference-python needs vocab.json beside {merges}")
        ref = reference_counts(args.reference_python, folder, texts)
        print(f"reference: slow CLIPTokenizer, {ref['versions']}, text clean-up {ref['mode']}")
        print(
            f"  as sd-scripts runs it:          new agrees on {agreement(new_counts, ref['as_is'], texts)}, "
            f"old on {agreement(old_counts, ref['as_is'], texts)}"
        )
        print(
            f"  with the counter's clean-up:    new agrees on {agreement(new_counts, ref['same_clean'], texts)}, "
            f"old on {agreement(old_counts, ref['same_clean'], texts)}"
        )
        plain = [i for i, t in enumerate(texts) if t.isascii() and "&" not in t and "\x00" not in t]
        same = sum(new_counts[i] == ref["as_is"][i] for i in plain)
        print(
            f"  as sd-scripts runs it, on the {len(plain):,} ASCII captions without '&' or NUL: new agrees on {same:,}"
        )


if __name__ == "__main__":
    main()
