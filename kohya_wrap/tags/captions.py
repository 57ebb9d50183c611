"""Caption files as the tag tools see them: a file decoded into lines of items (BOM and every line
ending kept, so encoding gives the same bytes back), each image's caption file in a concept folder,
and the concepts chosen for an edit with the caption settings sd-scripts reads them with.

A caption file is UTF-8 (a leading BOM is kept), split into lines on CRLF / LF / CR (each line ending
kept as it was); every non-empty line is one item list (sd-scripts' wildcard captions put alternatives
on separate lines).
"""

from __future__ import annotations

import codecs
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from kohya_wrap.dataset.scan import scan_folder
from kohya_wrap.tags.items import line_keys

if TYPE_CHECKING:
    from kohya_wrap.spec.load import LoadedSpec

NOT_UTF8 = "not UTF-8, left untouched"

_LINE_BREAK = re.compile(r"(\r\n|\n|\r)")


@dataclass
class Caption:
    """A decoded caption: lines with their own line endings, and whether it started with a BOM."""

    lines: list[str]
    breaks: list[str]  # the ending after each line; "" after the last
    bom: bool = False

    @classmethod
    def parse(cls, text: str, bom: bool = False) -> "Caption":
        parts = _LINE_BREAK.split(text)
        return cls(parts[0::2], parts[1::2] + [""], bom)

    @classmethod
    def decode(cls, data: bytes) -> "Caption":
        """Raises UnicodeDecodeError for bytes that are not UTF-8."""
        bom = data.startswith(codecs.BOM_UTF8)
        return cls.parse(data[len(codecs.BOM_UTF8) :].decode("utf-8") if bom else data.decode("utf-8"), bom)

    @property
    def text(self) -> str:
        return "".join(line + end for line, end in zip(self.lines, self.breaks, strict=True))

    def encode(self) -> bytes:
        return (codecs.BOM_UTF8 if self.bom else b"") + self.text.encode("utf-8")

    @property
    def is_empty(self) -> bool:
        return not any(line.strip() for line in self.lines)

    def keys(self) -> set[str]:
        """Every non-empty item key in the caption (any line)."""
        return {k for line in self.lines if line.strip() for k in line_keys(line) if k}

    def edited(self, edit: Callable[[str], str], fill: list[str] | None = None) -> "Caption":
        """`edit` applied to each non-empty line; an empty caption gets `fill` (if any) as its only items."""
        if self.is_empty:
            if not fill:
                return self
            return Caption([", ".join(fill)] + self.lines[1:], list(self.breaks), self.bom)
        return Caption([edit(line) if line.strip() else line for line in self.lines], list(self.breaks), self.bom)


def key_diff(before: Caption | None, after: Caption) -> tuple[int, int]:
    """(items added, items removed), line by line, by key."""
    added = removed = 0
    old_lines = before.lines if before is not None else []
    for n in range(max(len(old_lines), len(after.lines))):
        old = Counter(k for k in line_keys(old_lines[n]) if k) if n < len(old_lines) else Counter()
        new = Counter(k for k in line_keys(after.lines[n]) if k) if n < len(after.lines) else Counter()
        added += sum((new - old).values())
        removed += sum((old - new).values())
    return added, removed


@dataclass
class CaptionFile:
    image: Path
    path: Path  # where its caption is (or would be)
    data: bytes | None = None  # None: no caption file
    caption: Caption | None = None  # None: none, or it does not decode
    error: str | None = None
    mtime_ns: int = 0
    mode: int = 0o644  # permission bits, kept on rewrite

    @property
    def exists(self) -> bool:
        return self.data is not None or self.error is not None


@dataclass
class ConceptCaptions:
    label: str
    folder: Path
    token: str | None  # the trigger token; regularization concepts have none
    extension: str
    shuffle: bool
    keep_tokens: int
    keep_separator: str
    is_reg: bool = False
    files: list[CaptionFile] = field(default_factory=list)

    @property
    def readable(self) -> list[CaptionFile]:
        return [f for f in self.files if f.caption is not None]

    @property
    def missing(self) -> list[CaptionFile]:
        return [f for f in self.files if not f.exists]

    @property
    def unreadable(self) -> list[CaptionFile]:
        return [f for f in self.files if f.error is not None]

    def keep_count(self, line: str) -> int:
        """How many leading items sd-scripts holds in place when shuffling (and `sort` leaves alone)."""
        keys = line_keys(line)
        keep = max(self.keep_tokens, 1 if self.token and keys[0] == self.token else 0)
        if self.keep_separator:
            for n, segment in enumerate(line.split(",")):
                if self.keep_separator in segment:
                    keep = max(keep, n + 1)
                    break
        return keep


def read_captions(folder: Path, extension: str) -> list[CaptionFile]:
    scan = scan_folder(folder, read_sizes=False)
    paired = scan.captions_with(extension)
    files = []
    for image in scan.images:
        path = paired.get(image.path)
        item = CaptionFile(image.path, path if path is not None else Path(image.stem_path + extension))
        if path is not None:
            try:
                item.data = path.read_bytes()
                info = path.stat()
                item.mtime_ns, item.mode = info.st_mtime_ns, stat.S_IMODE(info.st_mode)
                item.caption = Caption.decode(item.data)
            except UnicodeDecodeError:
                item.error = NOT_UTF8
            except OSError as exc:
                item.data, item.error = None, f"cannot be read ({exc.strerror}), left untouched"
        files.append(item)
    return files


def load_concepts(loaded: "LoadedSpec", concept_name: str | None) -> list[ConceptCaptions]:
    """The chosen concepts (all without a name) with their captions and caption settings."""
    return [
        ConceptCaptions(
            label=item.label,
            folder=item.folder,
            token=item.concept.token or None,
            extension=item.caption_extension,
            shuffle=item.shuffle_caption,
            keep_tokens=item.keep_tokens,
            keep_separator=item.keep_tokens_separator,
            is_reg=item.is_reg,
            files=read_captions(item.folder, item.caption_extension),
        )
        for item in loaded.settings.select_concepts(concept_name, loaded.layout.spec_file)
    ]


def tag_counts(concepts: Iterable[ConceptCaptions]) -> Counter:
    """Tag → the number of (readable) captions that contain it, over the concepts given."""
    counts: Counter = Counter()
    for concept in concepts:
        for item in concept.readable:
            counts.update(item.caption.keys())  # type: ignore[union-attr]
    return counts
