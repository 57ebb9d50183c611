"""`kohya-wrap lint` (and the same findings in `check`) on the project `prep` made from awkward photos,
plus the CLIP token counter and the hash cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from test_prep import picture, prepared  # noqa: F401 - the prepared project fixture

FOLDER = ("image", "2_mytoken woman")


def spoil(root: Path) -> Path:
    """After `prep`: the mistakes users make by hand in a training folder."""
    folder = root.joinpath(*FOLDER)
    (folder / "photo.txt").write_text("a woman in a park", encoding="utf-8")  # no trigger token
    tags = ", ".join(f"tag{i} detail" for i in range(30))  # ~120 CLIP tokens
    (folder / "cmyk.txt").write_text(f"mytoken, {tags}", encoding="utf-8")
    (folder / "gone.txt").write_text("mytoken, deleted image", encoding="utf-8")  # orphan
    (folder / "original.caption").write_text("mytoken, wrong extension", encoding="utf-8")
    Image.open(folder / "photo.png").save(folder / "photo again.jpg", quality=80)  # near-duplicate, another format
    picture((100, 150), 12).save(folder / "small.png")  # upscaled, in a bucket of its own
    return folder


def findings_of(data: dict) -> list[dict]:
    return [f for c in data["concepts"] for f in c["findings"]] + data["findings"]


def one(findings: list[dict], text: str) -> dict:
    hits = [f for f in findings if text in f["what"]]
    assert len(hits) == 1, (text, [f["what"] for f in findings])
    return hits[0]


def test_lint_on_the_prepared_project(prepared, cli):  # noqa: F811
    root, _ = prepared
    assert cli("prep", root, "--mode", "crop").code == 0  # every image at the resolution
    spoil(root)
    spec = root / "kohya-wrap.toml"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace("[training]\n", "[training]\ntrain_batch_size = 2\n"), encoding="utf-8"
    )

    result = cli("lint", root, "--json")
    assert result.code == 0, result.out + result.err  # warnings only
    data = json.loads(result.out)
    concept = data["concepts"][0]
    assert concept["images"] == 9 and concept["formats"] == {"png": 8, "jpg": 1}
    assert concept["short_side"] == {"min": 100, "median": 256, "max": 256}
    buckets = {(b["width"], b["height"]): b["images"] for b in concept["buckets"]}
    assert buckets[(256, 256)] == 8 and sum(buckets.values()) == 9
    findings = findings_of(data)
    assert one(findings, "only 9 image(s)")["severity"] == "warning"
    small = one(findings, "far below the 256×256 training size")
    assert "small.png (100×150, upscaled ×2.1)" in small["what"] and "`kohya-wrap prep` rejects" in small["fix"]
    assert not [f for f in findings if "get upscaled" in f["what"]]  # one finding per image
    single = one(findings, "bucket(s) hold a single image")
    assert single["severity"] == "warning" and "small.png" in single["what"] and "batch size of 2" in single["what"]
    assert "photo again.jpg ≈ photo.png" in one(findings, "near-duplicate pair")["what"]
    assert "gone.txt" in one(findings, "have no image next to them")["what"]
    assert "original.caption" in one(findings, 'caption but no ".txt" one')["what"]
    trigger = one(findings, 'do not contain the trigger token "mytoken"')
    assert "photo.txt" in trigger["what"] and trigger["what"].startswith("1 of 3 caption(s)")
    long = one(findings, "longer than the 75-token window")
    assert "cmyk.txt" in long["what"] and "at least" in long["what"] and "max_token_length = 225" in long["fix"]
    assert one(findings, "mixed file formats")["severity"] == "info"
    assert one(findings, 'have no ".txt" caption')["severity"] == "warning"  # check's own finding, shown per concept
    assert data["errors"] == 0 and data["warnings"] >= 8

    text = cli("lint", root)
    assert text.code == 0
    assert "mytoken · image/2_mytoken woman: 9 image(s) (8 png, 1 jpg)" in text.out
    assert "(!)" in text.out and "ok: no errors" in text.out

    checked = cli("check", root, "--json")
    assert checked.code == 0  # warnings do not fail check
    assert any("near-duplicate pair" in f["what"] for f in json.loads(checked.out)["findings"])

    # an error: a truncated image. lint and check both exit 2, plan refuses
    folder = root.joinpath(*FOLDER)
    (folder / "broken.png").write_bytes((folder / "photo.png").read_bytes()[:400])
    broken = cli("lint", root)
    assert broken.code == 2 and "broken.png" in broken.out and "1 error(s)" in broken.out
    assert cli("check", root).code == 2


def test_shuffled_captions_keep_the_trigger_in_front(prepared, cli):  # noqa: F811
    root, _ = prepared
    assert cli("prep", root, "--mode", "crop").code == 0  # every image at the resolution
    folder = root.joinpath(*FOLDER)
    (folder / "photo.txt").write_text("woman, mytoken, park", encoding="utf-8")
    spec = root / "kohya-wrap.toml"
    base = spec.read_text(encoding="utf-8")
    spec.write_text(base.replace("[dataset]\n", "[dataset]\nshuffle_caption = true\n"), encoding="utf-8")
    data = json.loads(cli("lint", root, "--json").out)
    assert one(findings_of(data), "keep_tokens = 0")["fix"].endswith("set dataset.keep_tokens = 1")
    spec.write_text(
        base.replace("[dataset]\n", "[dataset]\nshuffle_caption = true\nkeep_tokens = 1\n"), encoding="utf-8"
    )
    data = json.loads(cli("lint", root, "--json").out)
    buried = one(findings_of(data), "after the first 1 tag(s)")
    assert "photo.txt" in buried["what"] and "rotated.txt" not in buried["what"]  # "mytoken woman, …" is fine


def test_clip_token_counts(tmp_path):
    from kohya_wrap.dataset.tokens import ClipTokenCounter, PretokenCounter, counter_for, pretokens

    assert pretokens("Hello,  world! 123 it's") == ["hello", ",", "world", "!", "1", "2", "3", "it", "'s"]
    assert PretokenCounter().count("1girl, blue_eyes") == 6  # 1 · girl · , · blue · _ · eyes
    vocab = tmp_path / "tokenizers" / "openai_clip-vit-large-patch14"
    vocab.mkdir(parents=True)
    (vocab / "merges.txt").write_text("#version: 0.2\nh e\nhe l\nhel l\nhell o</w>\nw o\n", encoding="utf-8")
    (vocab / "vocab.json").write_text("{}", encoding="utf-8")
    counter = counter_for(tmp_path / "tokenizers")
    assert isinstance(counter, ClipTokenCounter) and counter.exact
    assert counter.count("hello") == 1  # h e l l o</w> → he l l o</w> → hel l o</w> → hell o</w> → hello</w>
    assert counter.count("Hellx") == 2  # hell · x</w>
    assert counter.count("wow, hello") == 2 + 1 + 1  # wo · w</w>, then ",", then hello</w>
    assert counter.count("中文") == 6  # no merges: one token per UTF-8 byte
    assert not counter_for(tmp_path / "nowhere").exact or pytest.skip(
        "a real CLIP tokenizer is in this machine's HF cache"
    )


# Captions at the corners of CLIP's pre-tokenizer and normalizer: contractions, letter runs next to digits
# and non-digit numerics, punctuation runs, underscores, accents composed and not, upper case (final sigma,
# dotted İ), CJK, emoji sequences, HTML entities, whitespace Python and Oniguruma disagree on, special tokens.
CORNERS = [
    "1girl, solo, long_hair, blue eyes, (masterpiece:1.2), [sketch], score_9, rating:safe, 1990s_(style)",
    "A photo of a WOMAN standing in the park. It's sunny; they'll REST, won't they?!",
    "it's it'S IT'S we're you'd she'll i'm don't ''s '' 's 'x",
    "x² ½ Ⅻ١٢٣ ①② 3.14 1024x768 v1.5 2023 a1b2",
    "café cafe\u0301 CAFE\u0301 naïve Ñandú STRAßE İstanbul ΟΔΟΣ ΣΊΣΥΦΟΣ Москва",
    "東京の夜景 中文标签 한국어 日本語",
    "🔥 👩‍🎤 ❤️ 🇯🇵 😀😀 :) ;-) ^_^ >_< @_@ !!! ... -- => ((( ))): @#$% ~~~ C++ _under_ #tag @user",
    "&amp; &quot;hi&quot; &#39; &lt;3 &amp;amp; R&amp;B AT&T &nbsp;x",
    "tabs\tand\nnew\r\nlines\u3000ideo\xa0nbsp \x1c\x1f\x85 end ",
    "<|startoftext|> a <|endoftext|> b <|ENDOFTEXT|>",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３ ﬁne ﬀ ǅungla Ǆ K Å \u200b a\u00adb",
    "",
]


def _slow_clip_count(merges_file: Path, text: str) -> int:
    """transformers 4.x's slow CLIPTokenizer (`_tokenize` and `bpe`, the one sd-scripts runs), with its
    ftfy step replaced by the counter's HTML/NFC clean-up: the reference for everything after it."""
    import html
    import itertools
    import unicodedata

    regex = pytest.importorskip("regex")
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in keep]
    byte_encoder = dict(zip(keep + others, map(chr, keep + list(range(256, 256 + len(others)))), strict=True))
    lines = merges_file.read_text(encoding="utf-8").strip().split("\n")[1:48895]
    ranks = {tuple(m.split()): i for i, m in enumerate(lines)}
    specials = r"<\|startoftext\|>|<\|endoftext\|>"
    pattern = regex.compile(specials + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", flags=regex.I)
    total = 0
    for chunk in regex.split(f"({specials})", text):  # special tokens are split off first
        if chunk in ("<|startoftext|>", "<|endoftext|>"):
            total += 1
            continue
        chunk = unicodedata.normalize("NFC", html.unescape(html.unescape(chunk)))
        chunk = regex.sub(r"\s+", " ", chunk).strip().lower()
        for token in pattern.findall(chunk):
            if token in ("<|startoftext|>", "<|endoftext|>"):
                total += 1
                continue
            word = [byte_encoder[b] for b in token.encode("utf-8")]
            word[-1] += "</w>"
            while len(word) > 1:
                first, second = min(itertools.pairwise(word), key=lambda pair: ranks.get(pair, float("inf")))
                if (first, second) not in ranks:
                    break
                merged, i = [], 0
                while i < len(word):
                    if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                        merged.append(first + second)
                        i += 2
                    else:
                        merged.append(word[i])
                        i += 1
                word = merged
            total += len(word)
    return total


def test_clip_token_counts_match_the_slow_tokenizer(tmp_path):
    """The counter (Hugging Face `tokenizers`) and CLIP's slow tokenizer give the same counts on a real BPE:
    one trained here on caption-like text (the hub is out of reach), with CLIP's `</w>` words and byte symbols.
    A wrong pre-tokenizer (GPT-2's, which keeps the space) or normalizer (none) must be caught."""
    import random

    from tokenizers import Regex, Tokenizer, pre_tokenizers, trainers
    from tokenizers.models import BPE

    from kohya_wrap.dataset.tokens import ClipTokenCounter, counter_for, find_vocabulary

    rng = random.Random(0)
    # not the special tokens: upper-cased and glued after punctuation they differ (1 token here, 3+ for the slow one)
    words = [w for w in " ".join(CORNERS).split() if "|" not in w] + ["photo", "woman", "standing", "hair", "looking"]
    texts = CORNERS + [" ".join(rng.choice(words) for _ in range(rng.randint(1, 20))) for _ in range(400)]
    texts += [rng.choice(["", " ", "\n"]).join(rng.sample(words, 5)).upper() for _ in range(100)]

    trainer = Tokenizer(BPE(end_of_word_suffix="</w>"))
    trainer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer.train_from_iterator(
        [t.lower() for t in texts] * 3,
        trainers.BpeTrainer(vocab_size=1500, end_of_word_suffix="</w>", initial_alphabet=alphabet, show_progress=False),
    )
    folder = tmp_path / "tokenizers" / "openai_clip-vit-large-patch14"
    folder.mkdir(parents=True)
    trainer.model.save(str(folder))  # vocab.json and merges.txt, "#version: 0.2" first, as CLIP's
    merges = folder / "merges.txt"
    assert len(merges.read_text(encoding="utf-8").splitlines()) > 300  # within and across words, CJK and emoji bytes

    counter = counter_for(tmp_path / "tokenizers")
    assert isinstance(counter, ClipTokenCounter)
    expected = [_slow_clip_count(merges, t) for t in texts]
    assert [counter.count(t) for t in texts] == expected
    assert sum(expected) > sum(len(t.split()) for t in texts)  # the BPE splits words: the check is not trivial

    (folder / "vocab.json").unlink()  # merges alone are enough: the vocabulary is derived from them
    merges_only = ClipTokenCounter(merges)
    assert [merges_only.count(t) for t in CORNERS] == expected[: len(CORNERS)]
    trainer.save(str(folder / "tokenizer.json"))  # a folder with only tokenizer.json: its merges are read
    merges.rename(tmp_path / "merges.txt")
    assert find_vocabulary(tmp_path / "tokenizers") == folder / "tokenizer.json"
    from_json = counter_for(tmp_path / "tokenizers")
    assert [from_json.count(t) for t in texts] == expected

    gpt2 = ClipTokenCounter(tmp_path / "merges.txt")
    gpt2.tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert [gpt2.count(t) for t in texts] != expected
    raw = ClipTokenCounter(tmp_path / "merges.txt")
    assert [len(raw.tokenizer.encode(t, add_special_tokens=False)) for t in texts] != expected


def test_hashes_are_cached(prepared, cli, monkeypatch):  # noqa: F811
    root, _ = prepared
    assert cli("prep", root, "--mode", "crop").code == 0  # every image at the resolution
    assert cli("lint", root).code == 0
    cache = json.loads((root / ".kohya-wrap" / "cache" / "dhash.json").read_text(encoding="utf-8"))
    assert len(cache) == 7

    import kohya_wrap.dataset.dhash

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(kohya_wrap.dataset.dhash, "image_dhash", no_decoding)
    assert cli("lint", root).code == 0
