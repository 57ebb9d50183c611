"""The run record (runs/<id>/manifest.json): typed, versioned, read by `runs`, `report` and `grid`; older
records are read, newer ones refused with a reason, damaged ones named — never an internal error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kohya_wrap.training.record import FORMAT, RecordError, find_run, list_runs, read_record

FORMAT_1 = {  # a record as kohya-wrap 0.1.0 wrote it before records had a format number
    "kohya_wrap": "0.1.0",
    "run_id": "20261120-101010",
    "started": "2026-11-20T10:10:10+00:00",
    "ended": "2026-11-20T10:12:00+00:00",
    "duration_s": 110.0,
    "verdict": "trained",
    "exit_code": 0,
    "child_exit_code": 0,
    "sd_scripts": {
        "root": "/sd",
        "python": "/sd/venv/bin/python",
        "schema": "sd-scripts v0.10.1 (vendor)",
        "commit": "ae72efb",
    },
    "python": "3.11.7",
    "platform": "Linux",
    "environment": {"gpus": []},
    "resume": None,
    "seed": 42,
    "steps": {"planned": 6, "reached": 6},
    "final_loss": 0.12,
    "final_lr": 0.0001,
    "sample_images": [],
    "outputs": [{"path": "/p/model/lora.safetensors", "bytes": 1234}],
    "dataset": [{"path": "image/1_t c/a.png", "bytes": 10, "sha256": "0" * 64}],
    "diagnosis": [],
}


def write(project: Path, run_id: str, content: str) -> Path:
    run_dir = project / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(content, encoding="utf-8")
    return run_dir


def test_a_format_1_record_is_read(tmp_path):
    record = read_record(write(tmp_path, "20261120-101010", json.dumps(FORMAT_1)))
    assert record.format == FORMAT and record.settings is None
    assert record.sd_scripts.schema_ == "sd-scripts v0.10.1 (vendor)" and record.outputs[0].bytes == 1234
    assert record.to_dict()["sd_scripts"]["schema"] == "sd-scripts v0.10.1 (vendor)"  # written back under its JSON name


@pytest.mark.parametrize(
    "content, message",
    [
        (json.dumps({**FORMAT_1, "format": FORMAT + 1}), f"written by a newer kohya-wrap (record format {FORMAT + 1}"),
        ("{not json", "not a readable run record (JSONDecodeError)"),
        ("{}", "not a readable run record (kohya_wrap: field required)"),
        ("[1, 2]", "not a run record (expected a JSON object)"),
        (json.dumps({**FORMAT_1, "steps": "six"}), "not a readable run record (steps:"),
        (json.dumps({**FORMAT_1, "format": "2"}), "not a run record (format '2')"),
    ],
)
def test_unreadable_records_are_named(tmp_path, content, message):
    run_dir = write(tmp_path, "20261120-101010", content)
    with pytest.raises(RecordError) as raised:
        read_record(run_dir)
    assert message in raised.value.message and str(run_dir) in raised.value.message


def test_runs_lists_every_run_and_shows_one(project, cli):
    root = project()
    write(root, "20261120-101010", json.dumps(FORMAT_1))
    write(root, "20261121-090000", "{damaged")
    (root / "runs" / "20261122-080000").mkdir()  # running, or ended without a record
    listing = cli("runs", root)
    assert listing.code == 0, listing.err
    lines = listing.out.splitlines()
    assert lines[0].startswith("20261122-080000  incomplete")
    assert lines[1].startswith("20261121-090000  unreadable record:")
    assert lines[2].startswith("20261120-101010  trained") and "steps 6/6" in lines[2]
    shown = cli("runs", "show", "20261120-101010", root)
    assert shown.code == 0 and "run 20261120-101010: trained (exit 0)" in shown.out
    damaged = cli("runs", "show", "20261121-090000", root)
    assert damaged.code == 2 and "not a readable run record" in damaged.err and "internal error" not in damaged.err


def test_runs_show_stays_inside_the_project(project, cli, tmp_path):
    root = project()
    write(tmp_path, "outside", json.dumps(FORMAT_1))  # tmp_path/runs/outside/manifest.json
    for run_id in ("../../runs/outside", "..", "/etc"):
        result = cli("runs", "show", run_id, root)
        assert result.code == 2 and "no such run record" in result.err, run_id


def test_find_and_list_take_the_newest_with_a_record(tmp_path):
    write(tmp_path, "20261120-101010", json.dumps(FORMAT_1))
    (tmp_path / "runs" / "20261123-000000").mkdir()
    assert find_run(tmp_path / "runs", None) == tmp_path / "runs" / "20261120-101010"
    assert [d.name for d, _ in list_runs(tmp_path / "runs")] == ["20261123-000000", "20261120-101010"]
    assert find_run(tmp_path / "nothing", None) is None


def test_runs_never_cuts_a_verdict_mid_word(project, cli):
    """The listing keeps a column for the verdict; a longer one ends at a word with "…" (`runs show` has
    it whole)."""
    root = project()
    verdict = "failed: no LoRA file was written (sd-scripts exited with 1)"
    write(root, "20261120-101010", json.dumps({**FORMAT_1, "verdict": verdict, "exit_code": 1, "outputs": []}))
    write(root, "20261121-101010", json.dumps(FORMAT_1))
    lines = cli("runs", root).out.splitlines()
    shown = lines[1].split("  ", 1)[1].split("  steps ")[0].strip()
    assert shown == "failed: no LoRA file was written…"
    assert all(word in verdict.split() for word in shown.rstrip("…").split())  # whole words only
    assert lines[0].index("steps ") == lines[1].index("steps ")  # the columns still line up
    assert verdict in cli("runs", "show", "20261120-101010", root).out
