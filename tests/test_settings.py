"""Derived settings are computed once, right after the spec validates: every command reports the same
batch size, buckets, caption extension, resolution, precision, length, save cadence and file names,
wherever the spec (or a preset, or `--set`) sets them."""

from __future__ import annotations

import json

from conftest import make_image


def single_bucket_project(project):
    """10 square images and one far wider: the wide one gets a bucket of its own."""
    root = project()
    make_image(root / "image" / "10_mytoken woman" / "wide.png", (1024, 384)).with_suffix(".txt").write_text("mytoken, wide", encoding="utf-8")
    return root


def test_dataset_batch_size_is_the_batch_size_everywhere(project, cli):
    """sd-scripts takes [general] batch_size of dataset.toml over train_batch_size: so must every command."""
    root = single_bucket_project(project)
    spec = root / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8") + "\n[dataset]\nbatch_size = 4\n", encoding="utf-8")  # the preset says train_batch_size = 2

    planned = cli("plan", root, "--json")
    assert planned.code == 0, planned.err
    assert json.loads(planned.out)["batch_size"] == 4
    for command in ("check", "lint"):
        result = cli(command, root, "--json")
        data = json.loads(result.out)
        findings = data["findings"] + [f for c in data.get("concepts", []) if isinstance(c, dict) for f in c.get("findings", [])]
        single = [f for f in findings if "hold a single image" in f["what"]]
        assert single and all("batch size of 4" in f["what"] for f in single), (command, single)


def test_set_extends_switches_the_preset(project, cli):
    root = project()
    planned = cli("plan", root, "--json", "--set", "extends=sdxl-character")
    assert planned.code == 0, planned.err
    data = json.loads(planned.out)
    assert data["script"] == "sdxl_train_network.py"
    train = (root / "config" / "train.toml").read_text(encoding="utf-8")
    assert 'mixed_precision = "bf16"' in train and "no_half_vae = true" in train  # the SDXL preset's, not sd15's fp16
    checked = cli("check", root, "--set", "extends=sdxl-character")
    assert "· sdxl ·" in checked.out


def test_set_extends_to_a_missing_preset_is_refused(project, cli):
    result = cli("check", project(), "--set", "extends=no-such-preset")
    assert result.code == 2 and "no preset named 'no-such-preset'" in result.err
