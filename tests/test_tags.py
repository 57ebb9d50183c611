"""`kohya-wrap tags …`: statistics and byte-exact tag edits on awkward real caption files, the snapshot
history and `tags undo`, plus the caption model of the kohya_wrap/tags package."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from kohya_wrap import tags as tagmod
from kohya_wrap.tags import (
    Caption,
    dedupe_items,
    insert_items,
    item_key,
    remove_items,
    replace_items,
    sort_items,
    trigger_first,
)
from kohya_wrap.tags import history as snapshots

FOLDER = ("image", "10_mytoken woman")
BOM = b"\xef\xbb\xbf"

CAPTIONS: dict[str, bytes | None] = {
    "img000": b"mytoken, a woman with blue eyes standing in a park",  # BLIP sentence with a trigger prefix
    "img001": b"mytoken, a photo of a woman smiling at the camera\n",
    "img002": b"1girl, solo, blue eyes, long hair, smile",
    "img003": b"1girl, blue eyes, mytoken, short hair",  # trigger not first
    "img004": BOM + b"mytoken, 1girl, blue eyes, outdoors",
    "img005": b"1girl, blue eyes, smile\r\n",  # CRLF
    "img006": b"1girl, long hair, blue eyes,",  # trailing comma
    "img007": b"1girl,  blue  eyes ,  smile",  # double spaces
    "img008": "mytoken, 一个女孩，蓝色眼睛, blue eyes".encode(),  # the fullwidth comma is not a separator
    "img009": b"",  # empty
    "img010": b"1girl, caf\xe9, blue eyes",  # Latin-1: not UTF-8
    "img011": None,  # no caption file
    "img012": b"1girl, blue eyes\nmytoken, blue eyes, smile\n",  # wildcard lines
    "img013": b"blue eyes",
    "img014": b"mytoken, 1girl, white background",  # untouched by remove/add/trigger
    "img015": b"1girl, solo, smile, outdoors",
    "img016": b"1girl, long hair, smile",
    "img017": b"1girl, solo, red dress",
    "img018": b"1girl, smile",
    "img019": b"solo, long hair, outdoors",
}


@pytest.fixture
def root(tmp_path, base_model) -> Path:
    from PIL import Image

    root = tmp_path / "tags 项目"
    folder = root.joinpath(*FOLDER)
    folder.mkdir(parents=True)
    (root / "kohya-wrap.toml").write_text(
        f'name = "t"\n[model]\nbase = "{base_model.as_posix()}"\n[[concepts]]\ntoken = "mytoken"\nclass = '
        '"woman"\nrepeats = 10\n'
        '[dataset]\nresolution = 512\ncaption_extension = ".txt"\n[training]\nmax_train_epochs = 1\n',
        encoding="utf-8",
    )
    for n, (stem, data) in enumerate(CAPTIONS.items()):
        Image.new("RGB", (64, 64), (n * 12, 90, 160)).save(folder / f"{stem}.png")
        if data is not None:
            (folder / f"{stem}.txt").write_bytes(data)
    return root


def caption(root: Path, stem: str) -> bytes:
    return root.joinpath(*FOLDER, f"{stem}.txt").read_bytes()


def fingerprint(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every project file but the history: its SHA-256, modification time and permissions."""
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
            p.stat().st_mode,
        )
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".kohya-wrap" not in p.relative_to(root).parts
    }


def history(root: Path) -> list[str]:
    folder = root / ".kohya-wrap" / "caption-history"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ---------------------------------------------------------------------------------------------- the CLI


def test_stats_counts(root, cli):
    result = cli("tags", "stats", root, "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    concept = data["concepts"][0]
    assert concept["images"] == 20 and concept["captions"] == 19
    assert concept["missing_caption"] == ["image/10_mytoken woman/img011.png"]
    assert [u["file"] for u in concept["unreadable"]] == ["image/10_mytoken woman/img010.txt"]
    assert concept["unreadable"][0]["reason"] == "not UTF-8, left untouched"
    assert concept["empty"] == ["image/10_mytoken woman/img009.txt"]
    assert len(concept["missing_trigger"]) == 11  # 18 readable, 7 mention mytoken
    assert [Path(p).stem for p in concept["trigger_not_first"]] == ["img003", "img012"]
    assert data["captions"] == 18
    counts = {t["tag"]: t["count"] for t in data["tags"]}
    assert counts["1girl"] == 12 and counts["blue eyes"] == 9 and counts["mytoken"] == 7 and counts["smile"] == 7
    assert counts["solo"] == 4 and counts["long hair"] == 4 and counts["outdoors"] == 3
    assert counts["一个女孩，蓝色眼睛"] == 1  # one item: "，" does not split
    assert [t["tag"] for t in data["tags"][:4]] == ["1girl", "blue eyes", "mytoken", "smile"]  # ties alphabetical

    text = cli("tags", "stats", root, "--top", "3")
    assert text.code == 0
    assert "mytoken · image/10_mytoken woman: 20 image(s), 19 caption file(s)" in text.out
    assert "1 image(s) without a caption file: img011.png" in text.out
    assert "img010.txt: not UTF-8, left untouched" in text.out
    assert '11 caption(s) without the trigger token "mytoken"' in text.out
    assert re.search(r"^  12   67%  1girl$", text.out, re.M) and re.search(r"^   9   50%  blue eyes$", text.out, re.M)
    assert "outdoors" not in text.out  # --top 3


def test_remove_add_trigger_then_undo_everything(root, cli):
    root.joinpath(*FOLDER, "img002.txt").chmod(0o640)
    before = fingerprint(root)

    removed = cli("tags", "remove", root, "blue eyes")
    assert removed.code == 0, removed.err
    assert "9 file(s) changed, 0 item(s) added, 10 removed" in removed.out
    assert "img010.txt: not UTF-8, left untouched" in removed.out
    assert caption(root, "img000") == CAPTIONS["img000"]  # a sentence is one item: not touched
    assert caption(root, "img002") == b"1girl, solo, long hair, smile"
    assert root.joinpath(*FOLDER, "img002.txt").stat().st_mode & 0o777 == 0o640  # permissions kept
    assert caption(root, "img004") == BOM + b"mytoken, 1girl, outdoors"
    assert caption(root, "img005") == b"1girl, smile\r\n"
    assert caption(root, "img006") == b"1girl, long hair,"
    assert caption(root, "img007") == b"1girl,  smile"
    assert caption(root, "img008") == "mytoken, 一个女孩，蓝色眼睛".encode()
    assert caption(root, "img012") == b"1girl\nmytoken, smile\n"
    assert caption(root, "img013") == b""
    assert caption(root, "img010") == CAPTIONS["img010"]
    assert (
        fingerprint(root)["image/10_mytoken woman/img014.txt"] == before["image/10_mytoken woman/img014.txt"]
    )  # not rewritten
    assert len(history(root)) == 1

    added = cli("tags", "add", root, "white background", "--back")
    assert added.code == 0, added.err
    assert "17 file(s) changed, 18 item(s) added, 0 removed" in added.out
    assert "1 image(s) have no caption file, left without one (--create gives them one): img011.png" in added.out
    assert caption(root, "img000") == b"mytoken, a woman with blue eyes standing in a park, white background"
    assert caption(root, "img001") == b"mytoken, a photo of a woman smiling at the camera, white background\n"
    assert caption(root, "img004") == BOM + b"mytoken, 1girl, outdoors, white background"
    assert caption(root, "img005") == b"1girl, smile, white background\r\n"
    assert caption(root, "img006") == b"1girl, long hair, white background,"
    assert caption(root, "img007") == b"1girl,  smile,  white background"  # the line's own separator
    assert caption(root, "img008") == "mytoken, 一个女孩，蓝色眼睛, white background".encode()
    assert caption(root, "img009") == b"white background"
    assert caption(root, "img012") == b"1girl, white background\nmytoken, smile, white background\n"
    assert caption(root, "img013") == b"white background"
    assert not root.joinpath(*FOLDER, "img011.txt").exists()

    trigger = cli("tags", "trigger", root, "mytoken")
    assert trigger.code == 0, trigger.err
    assert "warning" not in trigger.out  # shuffle_caption is off
    assert caption(root, "img002") == b"mytoken, 1girl, solo, long hair, smile, white background"
    assert caption(root, "img003") == b"mytoken, 1girl, short hair, white background"
    assert caption(root, "img004") == BOM + b"mytoken, 1girl, outdoors, white background"
    assert caption(root, "img005") == b"mytoken, 1girl, smile, white background\r\n"
    assert caption(root, "img006") == b"mytoken, 1girl, long hair, white background,"
    assert caption(root, "img007") == b"mytoken,  1girl,  smile,  white background"
    assert caption(root, "img008") == "mytoken, 一个女孩，蓝色眼睛, white background".encode()
    assert caption(root, "img012") == b"mytoken, 1girl, white background\nmytoken, smile, white background\n"
    assert caption(root, "img013") == b"mytoken, white background"
    assert caption(root, "img014") == CAPTIONS["img014"]
    assert len(history(root)) == 3 and history(root)[-1].endswith("-trigger")
    assert history(root)[0].endswith("-remove") and re.match(r"\d{8}T\d{6}-000001-remove$", history(root)[0])

    stats = json.loads(cli("tags", "stats", root, "--json").out)
    assert stats["concepts"][0]["missing_trigger"] == []
    assert not stats["concepts"][0]["trigger_not_first"]

    undo = cli("tags", "undo", root)
    assert undo.code == 0, undo.err
    assert "-trigger" in undo.out and "2 earlier edit(s) can still be undone" in undo.out
    assert caption(root, "img003") == b"1girl, mytoken, short hair, white background"
    assert cli("tags", "undo", root).code == 0
    last = cli("tags", "undo", root)
    assert last.code == 0 and "kohya-wrap tags remove" in last.out and "no earlier edits" in last.out
    assert fingerprint(root) == before  # every byte and every modification time
    assert history(root) == []

    nothing = cli("tags", "undo", root)
    assert nothing.code == 2
    assert "nothing to undo" in nothing.err and "Traceback" not in nothing.err


def test_dry_run_writes_nothing(root, cli):
    before = fingerprint(root)
    result = cli("tags", "remove", root, "blue eyes", "--dry-run")
    assert result.code == 0
    assert "dry run — nothing written" in result.out
    assert "9 file(s) would change, 0 item(s) added, 10 removed" in result.out
    assert "img002.txt: 1girl, solo, blue eyes, long hair, smile → 1girl, solo, long hair, smile" in result.out
    data = json.loads(cli("tags", "trigger", root, "mytoken", "--create", "--dry-run", "--json").out)
    assert data["dry_run"] and data["snapshot"] is None
    concept = data["concepts"][0]
    assert concept["created"] == 1 and "image/10_mytoken woman/img011.txt" in concept["changed"]
    assert fingerprint(root) == before and history(root) == []


def test_regex_replace_dedupe(root, cli):
    result = cli("tags", "remove", root, "--regex", r".* hair", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["concepts"][0]["items_removed"] == 5 and data["snapshot"]
    assert caption(root, "img003") == b"1girl, blue eyes, mytoken"
    assert caption(root, "img019") == b"solo, outdoors"

    bad = cli("tags", "remove", root, "--regex", "(unclosed")
    assert bad.code == 2 and "'(unclosed' is not a valid regular expression" in bad.err and "Traceback" not in bad.err

    assert cli("tags", "replace", root, "1girl", "1woman").code == 0
    assert caption(root, "img002") == b"1woman, solo, blue eyes, smile"
    assert caption(root, "img005") == b"1woman, blue eyes, smile\r\n"
    assert cli("tags", "replace", root, "--regex", r"(\w+) eyes", r"\1_eyes").code == 0
    assert caption(root, "img007") == b"1woman,  blue_eyes ,  smile"  # the item's own spacing kept
    assert caption(root, "img000") == CAPTIONS["img000"]  # fullmatch: not inside a sentence
    bad_group = cli("tags", "replace", root, "--regex", r"(\w+)_eyes", r"\2")
    assert bad_group.code == 2 and "invalid group reference" in bad_group.err
    assert caption(root, "img007") == b"1woman,  blue_eyes ,  smile"

    folder = root.joinpath(*FOLDER)
    (folder / "img018.txt").write_bytes(b"1girl, smile, 1girl,  smile , solo\r\nsmile, smile")
    assert cli("tags", "dedupe", root).code == 0
    assert caption(root, "img018") == b"1girl, smile, solo\r\nsmile"


def test_prune_and_errors(root, cli):
    assert cli("tags", "prune", root, "--min-count", "0").code == 2
    assert "is the project folder: give the OLD NEW after it" in cli("tags", "replace", root, "1girl").err
    unknown = cli("tags", "stats", root, "--concept", "nobody")
    assert (
        unknown.code == 2
        and "--concept nobody: no such concept" in unknown.err
        and "use one of: mytoken" in unknown.err
    )
    result = cli("tags", "prune", root, "--min-count", "4")
    assert result.code == 0, result.err
    assert caption(root, "img000") == b"mytoken"  # the sentence appears once; the trigger is never pruned
    assert caption(root, "img003") == b"1girl, blue eyes, mytoken"
    assert caption(root, "img017") == b"1girl, solo"
    assert caption(root, "img019") == b"solo, long hair"
    assert caption(root, "img008") == b"mytoken, blue eyes"
    assert caption(root, "img004") == BOM + b"mytoken, 1girl, blue eyes"


def test_sort_orders_and_keep_tokens(root, cli):
    folder = root.joinpath(*FOLDER)
    (folder / "img015.txt").write_bytes(b"outdoors, smile, solo, 1girl")
    assert cli("tags", "sort", root, "--by", "alpha").code == 0
    assert caption(root, "img015") == b"1girl, outdoors, smile, solo"
    assert caption(root, "img003") == b"1girl, blue eyes, mytoken, short hair"
    assert caption(root, "img004") == BOM + b"mytoken, 1girl, blue eyes, outdoors"  # the leading trigger stays
    assert caption(root, "img006") == b"1girl, blue eyes, long hair,"  # the empty trailing item stays last

    assert cli("tags", "undo", root).code == 0
    assert cli("tags", "sort", root).code == 0  # frequency: 1girl 12, blue eyes 9, mytoken 7, smile 7, solo 4, …
    assert caption(root, "img015") == b"1girl, smile, solo, outdoors"
    assert caption(root, "img002") == b"1girl, blue eyes, smile, long hair, solo"
    assert caption(root, "img003") == b"1girl, blue eyes, mytoken, short hair"

    assert cli("tags", "undo", root).code == 0
    result = cli(
        "tags", "sort", root, "--by", "alpha", "--set", "dataset.keep_tokens=2", "--set", "dataset.shuffle_caption=true"
    )
    assert result.code == 0, result.err
    assert caption(root, "img015") == b"outdoors, smile, 1girl, solo"  # the first two stay
    assert caption(root, "img002") == b"1girl, solo, blue eyes, long hair, smile"
    assert "shuffle_caption is on" in result.out


def test_trigger_warns_about_shuffling_and_create_then_undo(root, cli):
    before = fingerprint(root)
    result = cli("tags", "trigger", root, "mytoken", "--create", "--set", "dataset.shuffle_caption=true")
    assert result.code == 0, result.err
    assert "shuffle_caption is on and keep_tokens is 0" in result.out and "set dataset.keep_tokens = 1" in result.out
    assert "(1 created)" in result.out
    assert caption(root, "img011") == b"mytoken"
    assert caption(root, "img009") == b"mytoken"
    assert caption(root, "img010") == CAPTIONS["img010"]
    snapshot = root / ".kohya-wrap" / "caption-history" / history(root)[0] / "snapshot.json"
    meta = json.loads(snapshot.read_text(encoding="utf-8"))
    assert meta["files"]["image/10_mytoken woman/img011.txt"] == "created"
    assert meta["command"] == shlex.join(
        ["kohya-wrap", "tags", "trigger", str(root), "mytoken", "--create", "--set", "dataset.shuffle_caption=true"]
    )
    assert cli("tags", "undo", root).code == 0
    assert not root.joinpath(*FOLDER, "img011.txt").exists()
    assert fingerprint(root) == before


def test_add_without_dir_inside_the_project(root, cli, monkeypatch):
    monkeypatch.chdir(root)
    result = cli("tags", "add", "smile", "--front", "--concept", "mytoken")
    assert result.code == 0, result.err
    assert caption(root, "img017") == b"smile, 1girl, solo, red dress"
    assert caption(root, "img002") == CAPTIONS["img002"]  # already has it
    root.joinpath(*FOLDER, "img017.txt").write_bytes(b"smile, 1girl, edited by hand")
    undo = cli("tags", "undo")
    assert undo.code == 0 and "1 of them had been edited since" in undo.out and "img017.txt" in undo.out
    assert caption(root, "img017") == CAPTIONS["img017"]


def test_the_core_of_each_command_is_callable_without_click(root):
    from kohya_wrap.errors import KohyaWrapError
    from kohya_wrap.spec.load import load_project

    loaded = load_project(root, ())
    stats = tagmod.tag_stats(loaded, top=2)
    assert stats.captions == 18 and stats.tags == [("1girl", 12), ("blue eyes", 9)]
    assert stats.concepts[0].missing_caption == ["image/10_mytoken woman/img011.png"]
    before = fingerprint(root)
    dry = tagmod.edit_captions(loaded, tagmod.remove_tags(["blue eyes"]), dry_run=True)
    assert dry.snapshot is None and len(dry.changes) == 9 and fingerprint(root) == before
    assert dry.as_dict()["concepts"][0]["items_removed"] == 10
    done = tagmod.edit_captions(loaded, tagmod.remove_tags(["blue eyes"]), command_line="remove blue eyes")
    assert done.snapshot == history(root)[0] and caption(root, "img002") == b"1girl, solo, long hair, smile"
    with pytest.raises(KohyaWrapError, match="must be 1 or more"):
        tagmod.prune_tags(0)
    undone = tagmod.undo(root)
    assert undone.command == "remove blue eyes" and len(undone.restored) == 9 and fingerprint(root) == before


HOLD_THE_DATASET_LOCK = """
import sys, time
from pathlib import Path
from kohya_wrap.fsutil import dataset_lock
with dataset_lock(Path(sys.argv[1]), "prep"):
    print("held", flush=True)
    time.sleep(60)
"""
BUSY = "another kohya-wrap command is changing this project's images or captions"


def test_edits_and_undo_are_refused_while_another_command_holds_the_dataset_lock(root, cli):
    assert cli("tags", "add", root, "first").code == 0
    before, recorded = fingerprint(root), history(root)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_DATASET_LOCK, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for args in [
            ("add", root, "foo"),
            ("remove", root, "blue eyes"),
            ("replace", root, "1girl", "1woman"),
            ("dedupe", root),
            ("prune", root, "--min-count", "2"),
            ("trigger", root, "mytoken", "--create"),
            ("sort", root),
            ("undo", root),
        ]:
            refused = cli("tags", *args)
            assert refused.code == 2, args
            assert BUSY in refused.err and f"pid {holder.pid}" in refused.err and "Traceback" not in refused.err, args
            assert f"`kohya-wrap tags {args[0]}` again" in refused.err, args
        assert fingerprint(root) == before  # every caption byte-identical
        assert history(root) == recorded  # nothing recorded, nothing undone
        dry = cli("tags", "add", root, "foo", "--dry-run")  # reading needs no lock
        assert dry.code == 0 and "18 file(s) would change" in dry.out
        assert cli("tags", "stats", root).code == 0
    finally:
        holder.kill()
        holder.wait()
    added = cli("tags", "add", root, "foo")  # the holder is gone, and the OS released its lock with it
    assert added.code == 0, added.err
    assert caption(root, "img002") == b"1girl, solo, blue eyes, long hair, smile, first, foo"
    assert len(history(root)) == 2


def test_interrupted_edit_is_undone(root, cli, monkeypatch):
    before = fingerprint(root)
    real = snapshots.write_bytes_atomic
    calls = []

    def flaky(path, data):
        if path.suffix == ".txt":
            calls.append(path)
            if len(calls) == 3:
                raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(snapshots, "write_bytes_atomic", flaky)
    result = cli("tags", "add", root, "white background")
    assert result.code == 130
    assert "interrupted after rewriting 2 of 17" in result.err and "tags undo" in result.err
    for stem, data in CAPTIONS.items():
        if data is not None:
            now = caption(root, stem)
            assert now == data or now.replace(b"white background", b"") != now, stem
    assert sum(caption(root, p.stem) != CAPTIONS[p.stem] for p in calls[:2]) == 2
    monkeypatch.setattr(snapshots, "write_bytes_atomic", real)
    assert cli("tags", "undo", root).code == 0
    assert fingerprint(root) == before


def test_interrupted_snapshot_touches_nothing(root, cli, monkeypatch):
    from kohya_wrap import fsutil

    before = fingerprint(root)
    real = fsutil.write_bytes_atomic
    count = []

    def flaky(path, data):
        count.append(path)
        if len(count) == 2:
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(fsutil, "write_bytes_atomic", flaky)
    assert cli("tags", "remove", root, "blue eyes").code == 130
    assert fingerprint(root) == before
    assert len(history(root)) == 1  # incomplete: no snapshot.json
    monkeypatch.setattr(fsutil, "write_bytes_atomic", real)
    nothing = cli("tags", "undo", root)
    assert nothing.code == 2 and "nothing to undo" in nothing.err
    assert history(root) == []  # cleaned


# ---------------------------------------------------------------------------------------------- the caption model


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n",
        b"a, b",
        BOM + b"a,b\r\n",
        b"a\r\nb\rc\n",
        b" a ,, b , ",
        "中文，标签, tag".encode(),
        b"\r\n\r\n",
        BOM,
    ],
)
def test_captions_round_trip(data):
    assert Caption.decode(data).encode() == data


def test_undecodable_caption():
    with pytest.raises(UnicodeDecodeError):
        Caption.decode(b"caf\xe9")


def test_item_operations():
    assert item_key("  blue \t eyes ") == "blue eyes"
    assert remove_items("a, b, c", lambda k: k == "a") == "b, c"
    assert remove_items(" a, b", lambda k: k == "a") == " b"
    assert remove_items("a , b", lambda k: k == "b") == "a"
    assert remove_items("a, b ", lambda k: k == "b") == "a "
    assert remove_items("a, b,, c,", lambda k: k == "c") == "a, b,,"
    assert remove_items("a, a", lambda k: k == "a") == ""
    assert insert_items("a, b, ", ["x"], front=False) == "a, b, x, "
    assert insert_items("a ,b", ["x", "y"], front=False) == "a ,b ,x ,y"
    assert insert_items(" a, b  ", ["x"], front=True) == " x, a, b  "
    assert insert_items("a, b", ["b"], front=True) == "a, b"
    assert insert_items("  ", ["x"], front=False) == "x"
    assert insert_items("中文，标签", ["tag"], front=False) == "中文，标签, tag"
    assert trigger_first("woman, tok, park, tok", "tok") == "tok, woman, park"
    assert trigger_first("tok, woman", "tok") == "tok, woman"
    assert replace_items("a, b, c", lambda k: "" if k == "b" else None) == "a, c"
    assert dedupe_items("a, b, a, c, b") == "a, b, c"
    assert sort_items("k, c, , b, a", lambda k: k, 1) == "k, a, , b, c"
    caption = Caption.decode(b"a, b\n\nc\n")
    assert caption.edited(lambda line: line.upper()).encode() == b"A, B\n\nC\n"
    assert Caption.decode(BOM + b"\n").edited(lambda line: line, ["x"]).encode() == BOM + b"x\n"
    assert tagmod.key_diff(Caption.decode(b"a, b"), Caption.decode(b"b, c, c")) == (2, 1)


def test_undo_refuses_paths_outside_the_project(root, cli):
    assert cli("tags", "add", root, "x").code == 0
    snapshot = root / ".kohya-wrap" / "caption-history" / history(root)[0] / "snapshot.json"
    meta = json.loads(snapshot.read_text(encoding="utf-8"))
    meta["files"] = {"../outside.txt": "created"}
    snapshot.write_text(json.dumps(meta), encoding="utf-8")
    result = cli("tags", "undo", root)
    assert result.code == 2 and "is not a path inside the project" in result.err


def test_keep_count_follows_keep_tokens_trigger_and_separator():
    concept = tagmod.ConceptCaptions("tok", Path("."), "tok", ".txt", shuffle=True, keep_tokens=0, keep_separator="")
    assert concept.keep_count("tok, a, b") == 1 and concept.keep_count("a, tok, b") == 0
    concept.keep_tokens = 2
    assert concept.keep_count("tok, a, b") == 2
    concept.keep_separator = "|||"
    assert concept.keep_count("a, b, c |||, d, e") == 3
    assert sort_items("z, y, c |||, e, d", lambda k: k, concept.keep_count("z, y, c |||, e, d")) == "z, y, c |||, d, e"


def test_every_tags_command_has_help_and_is_documented():
    from click.testing import CliRunner

    from kohya_wrap.cli import cli
    from kohya_wrap.cli import tags as _  # noqa: F401 - registers the group

    names = sorted(cli.commands["tags"].commands)
    assert names == ["add", "dedupe", "prune", "remove", "replace", "sort", "stats", "trigger", "undo"]
    repo = Path(__file__).resolve().parents[1]
    docs = [repo / "README.md", repo / "docs" / "tags.md"]
    text = "".join(p.read_text(encoding="utf-8") for p in docs if p.is_file())
    runner = CliRunner()
    for name in names:
        result = runner.invoke(cli, ["tags", name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, name
        assert f"kohya-wrap tags {name}" in text, name
