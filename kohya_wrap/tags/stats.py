"""`tags stats` as data: per concept, the images without a caption, unreadable and empty captions and
those lacking the trigger token (or not holding it first); over the chosen concepts, how many captions
hold each tag. Reads only, so it takes no lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kohya_wrap.dataset.tokens import token_pattern
from kohya_wrap.paths import relative
from kohya_wrap.tags.captions import ConceptCaptions, load_concepts, tag_counts
from kohya_wrap.tags.items import line_keys

if TYPE_CHECKING:
    from kohya_wrap.spec.load import LoadedSpec


@dataclass
class ConceptStats:
    label: str
    folder: str  # relative to the project root, like every path below
    is_reg: bool
    token: str | None
    images: int
    captions: int  # caption files, readable or not
    missing_caption: list[str]  # images
    unreadable: list[tuple[str, str]]  # (caption, why)
    empty: list[str]
    missing_trigger: list[str] | None  # None: the concept has no token
    trigger_not_first: list[str] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "folder": self.folder,
            "is_reg": self.is_reg,
            "token": self.token,
            "images": self.images,
            "captions": self.captions,
            "missing_caption": self.missing_caption,
            "unreadable": [{"file": f, "reason": why} for f, why in self.unreadable],
            "empty": self.empty,
            "missing_trigger": self.missing_trigger,
            "trigger_not_first": self.trigger_not_first,
        }


@dataclass
class TagStats:
    concepts: list[ConceptStats]
    captions: int  # readable captions over the chosen concepts
    distinct_tags: int
    tags: list[tuple[str, int]]  # (tag, captions holding it), most common first (ties alphabetical), the top N

    def as_dict(self) -> dict[str, Any]:
        """What `tags stats --json` prints."""
        return {
            "concepts": [c.as_dict() for c in self.concepts],
            "captions": self.captions,
            "distinct_tags": self.distinct_tags,
            "tags": [{"tag": t, "count": n} for t, n in self.tags],
        }


def concept_stats(root: Path, concept: ConceptCaptions) -> ConceptStats:
    readable = concept.readable
    lacking, not_first = None, None
    if concept.token:
        pattern = token_pattern(concept.token)
        marked = [(f, pattern.search(f.caption.text) is not None) for f in readable]  # type: ignore[union-attr]
        lacking = [relative(f.path, root) for f, holds in marked if not holds]
        not_first = [
            relative(f.path, root)
            for f, holds in marked
            if holds and any(line.strip() and line_keys(line)[0] != concept.token for line in f.caption.lines)
        ]  # type: ignore[union-attr]
    return ConceptStats(
        label=concept.label,
        folder=relative(concept.folder, root),
        is_reg=concept.is_reg,
        token=concept.token,
        images=len(concept.files),
        captions=sum(f.exists for f in concept.files),
        missing_caption=[relative(f.image, root) for f in concept.missing],
        unreadable=[(relative(f.path, root), f.error or "") for f in concept.unreadable],
        empty=[relative(f.path, root) for f in readable if f.caption.is_empty],  # type: ignore[union-attr]
        missing_trigger=lacking,
        trigger_not_first=not_first,
    )


def tag_stats(loaded: "LoadedSpec", concept_name: str | None = None, top: int = 30) -> TagStats:
    """Statistics over the chosen concepts (all without a name); `top`: how many tags (0: all)."""
    root = loaded.layout.root
    concepts = load_concepts(loaded, concept_name)
    counts = tag_counts(concepts)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].casefold(), kv[0]))
    return TagStats(
        [concept_stats(root, c) for c in concepts],
        sum(len(c.readable) for c in concepts),
        len(counts),
        ranked if top == 0 else ranked[:top],
    )
