"""Caption tag tools: a caption as ordered comma-separated items, edited without touching anything else.

    items     one line's items: keys, remove / replace / dedupe / insert / trigger first / sort
    captions  caption files (BOM and line endings kept), the chosen concepts with their caption settings
    edit      planning an edit and applying it under the project's dataset lock (`edit_captions`)
    commands  the edit behind each `tags` command (`add_tags`, `remove_tags`, …)
    pattern   a `--regex` matched under a time limit (`TagPattern`)
    history   snapshots under `.kohya-wrap/caption-history` and `undo`
    stats     `tag_stats`

Each command's core is a function here that returns data; `kohya_wrap.cli.tags` parses and prints.
"""

from kohya_wrap.tags.captions import (
    NOT_UTF8,
    Caption,
    CaptionFile,
    ConceptCaptions,
    key_diff,
    load_concepts,
    read_captions,
    tag_counts,
)
from kohya_wrap.tags.commands import (
    add_tags,
    clean_tags,
    dedupe_tags,
    prune_tags,
    remove_tags,
    replace_tag,
    sort_tags,
    trigger_tag,
)
from kohya_wrap.tags.edit import EXAMPLES, Change, ConceptPlan, EditResult, TagEdit, edit_captions, plan_edit
from kohya_wrap.tags.history import (
    HISTORY_DIR,
    Applied,
    EditInterrupted,
    UndoResult,
    apply_changes,
    undo,
    undo_last,
)
from kohya_wrap.tags.items import (
    dedupe_items,
    insert_items,
    item_key,
    line_keys,
    map_items,
    remove_items,
    replace_items,
    sort_items,
    trigger_first,
)
from kohya_wrap.tags.pattern import TagPattern
from kohya_wrap.tags.stats import ConceptStats, TagStats, tag_stats

__all__ = [
    "EXAMPLES",
    "HISTORY_DIR",
    "Applied",
    "NOT_UTF8",
    "Caption",
    "CaptionFile",
    "Change",
    "ConceptCaptions",
    "ConceptPlan",
    "ConceptStats",
    "EditInterrupted",
    "EditResult",
    "TagEdit",
    "TagPattern",
    "TagStats",
    "UndoResult",
    "add_tags",
    "apply_changes",
    "clean_tags",
    "dedupe_items",
    "dedupe_tags",
    "edit_captions",
    "insert_items",
    "item_key",
    "key_diff",
    "line_keys",
    "load_concepts",
    "map_items",
    "plan_edit",
    "prune_tags",
    "read_captions",
    "remove_items",
    "remove_tags",
    "replace_items",
    "replace_tag",
    "sort_items",
    "sort_tags",
    "tag_counts",
    "tag_stats",
    "trigger_first",
    "trigger_tag",
    "undo",
    "undo_last",
]
