"""Sample images during training with the real sd-scripts (marker `sdscripts`): the spec's [sample]
section, rendered to sd-scripts' prompt file, is read the way we meant it (sizes, seeds, per-prompt
sampler), and `run` notices every sample as it appears (events, dashboard lines, manifest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.sdscripts


SAMPLE = """
[sample]
prompts = [
    "kwdemo shape, red",
    {text = "kwdemo shape, blue", width = 64, height = 96, seed = 7, steps = 3, sampler = "ddim"},
]
negative = "blurry"
steps = 2
seed = 5
every_n_steps = 2
at_first = true
"""


def test_real_samples(tmp_path, real_sdscripts, cli):
    root = tmp_path / "samples"
    assert cli("demo", root, "--plain", "--steps", "2").code == 0
    spec = root / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8") + SAMPLE, encoding="utf-8")
    prompts = root / "config" / "sample_prompts.txt"
    result = cli("run", root, "--plain")
    assert result.code == 0, result.out + result.err
    assert prompts.read_text(encoding="utf-8").splitlines() == [
        "kwdemo shape, red --n blurry --w 64 --h 64 --d 5 --l 7 --s 2",
        "kwdemo shape, blue --n blurry --w 64 --h 96 --d 7 --l 7 --s 3 --ss ddim",
    ]
    samples = sorted((root / "model" / "sample").glob("*.png"))
    # at first (step 0) and at step 2, both prompts each time
    assert len(samples) == 4, [p.name for p in samples]
    sizes = sorted(Image.open(p).size for p in samples)
    assert sizes == [(64, 64), (64, 64), (64, 96), (64, 96)]
    run = max(p for p in (root / "runs").iterdir() if p.is_dir())
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert sorted(Path(p).name for p in manifest["sample_images"]) == [p.name for p in samples]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sum(e["event"] == "SampleSaved" for e in events) == 4, events[-3:]
