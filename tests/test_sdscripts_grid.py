"""`kohya-wrap grid` with the real sd-scripts (marker `sdscripts`): the demo project trains two
checkpoints on the CPU, then gen_img.py renders a checkpoint × weight grid per seed in one process,
each cell once, and a grid with one more weight renders only the new column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageChops

pytestmark = pytest.mark.sdscripts


def test_real_grid(tmp_path, real_sdscripts, cli):
    root = tmp_path / "demo 项目"
    assert cli("demo", root, "--plain", "--steps", "4").code == 0  # saves step 2, step 4 and the final file

    args = [
        "grid",
        root,
        "--checkpoints",
        "step 2,final",
        "--seeds",
        "1,2",
        "--prompts",
        "a red square",
        "--steps",
        "4",
        "--json",
    ]
    first = cli(*args, "--weights", "0,1")
    assert first.code == 0, first.out + first.err
    data = json.loads(first.out)
    assert data["rendered"] == 6 and data["cached"] == 0 and data["failed"] == 0  # weight 0 once per seed
    assert [p["label"] for p in data["pages"]] == ["seed 1", "seed 2"]
    folder = Path(data["folder"])
    assert folder.parent.parent.parent.name == "runs"  # runs/<run>/grids/<grid>
    log = (folder / "gen.log").read_text(encoding="utf-8")
    assert log.count("network mul: [1.0, 0.0]") == 2 and log.count("network mul: [0.0, 1.0]") == 2
    assert log.count("### ") == 1  # one gen_img.py process for the whole grid
    grid = json.loads((folder / "grid.json").read_text(encoding="utf-8"))
    cells = {(c["checkpoint_label"], c["seed"]): Image.open(folder / c["image"]).convert("RGB") for c in grid["cells"]}
    assert all(image.size == (64, 64) for image in cells.values())
    assert ImageChops.difference(cells[("final", 1)], cells[("base model", 1)]).getbbox() is not None  # the LoRA acts
    assert (
        ImageChops.difference(cells[("base model", 1)], cells[("base model", 2)]).getbbox() is not None
    )  # seeds differ

    second = cli(*args, "--weights", "0,0.5,1")
    assert second.code == 0, second.out + second.err
    data = json.loads(second.out)
    assert data["rendered"] == 4 and data["cached"] == 6
