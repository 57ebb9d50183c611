"""Derived settings are computed once, right after the spec validates: every command reports the same
batch size, buckets, caption extension, resolution, precision, length, save cadence and file names,
wherever the spec (or a preset, or `--set`) sets them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_image


def single_bucket_project(project):
    """10 square images and one far wider: the wide one gets a bucket of its own."""
    root = project()
    make_image(root / "image" / "10_mytoken woman" / "wide.png", (1024, 384)).with_suffix(".txt").write_text(
        "mytoken, wide", encoding="utf-8"
    )
    return root


def test_dataset_batch_size_is_the_batch_size_everywhere(project, cli):
    """sd-scripts takes [general] batch_size of dataset.toml over train_batch_size: so must every command."""
    root = single_bucket_project(project)
    spec = root / "kohya-wrap.toml"
    spec.write_text(
        spec.read_text(encoding="utf-8") + "\n[dataset]\nbatch_size = 4\n", encoding="utf-8"
    )  # the preset says train_batch_size = 2

    planned = cli("plan", root, "--json")
    assert planned.code == 0, planned.err
    assert json.loads(planned.out)["batch_size"] == 4
    for command in ("check", "lint"):
        result = cli(command, root, "--json")
        data = json.loads(result.out)
        findings = data["findings"] + [
            f for c in data.get("concepts", []) if isinstance(c, dict) for f in c.get("findings", [])
        ]
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


# ------------------------------------------------------------------------------------ every place, every consumer

BASE_SPEC = """\
extends = "base-preset.toml"
name = "mytoken_v1"

[model]
base = "{base}"

[[concepts]]
token = "mytoken"
class = "woman"
repeats = 2
{concept}
[dataset]
{dataset}
[training]
{training}
[launch]
{launch}
"""
BASE_PRESET = """\
[dataset]
resolution = 256
enable_bucket = true
min_bucket_reso = 128
max_bucket_reso = 512
bucket_reso_steps = 64
{dataset}
[training]
max_train_epochs = 2
{training}
"""


def settings_project(tmp_path, base_model, place: str, section: str, line: str):
    """A project whose one setting `line` sits in `section` of the spec, the preset it extends, or a
    concept; returns its folder and the --set overrides (for place == "--set")."""
    root = tmp_path / "settings 项目"
    parts = {
        "spec": {"concept": "", "dataset": "", "training": "", "launch": ""},
        "preset": {"dataset": "", "training": ""},
    }
    overrides: list[str] = []
    if place == "--set":
        key, _, value = line.partition(" = ")
        overrides.append(f"{section}.{key}={value}" if section != "concept" else f"concepts.0.{key}={value}")
    elif place == "preset":
        parts["preset"][section] = line
    else:
        parts["spec"][section] = line
    root.mkdir(parents=True, exist_ok=True)
    key = line.partition(" = ")[0]
    preset = "\n".join(t for t in BASE_PRESET.splitlines() if not (place == "preset" and t.startswith(f"{key} = ")))
    (root / "base-preset.toml").write_text(preset.format(**parts["preset"]) + "\n", encoding="utf-8")
    (root / "kohya-wrap.toml").write_text(
        BASE_SPEC.format(base=base_model.as_posix(), **parts["spec"]), encoding="utf-8"
    )
    folder = root / "image" / "2_mytoken woman"
    for index in range(6):
        make_image(folder / f"sq{index}.png", (256, 256), (index * 30, 80, 90))
    make_image(folder / "wide.png", (512, 192))  # a bucket of its own
    for image in folder.glob("*.png"):
        for extension in (".txt", ".caption"):
            image.with_suffix(extension).write_text(f"mytoken woman, {image.stem}", encoding="utf-8")
    return root, overrides


def consumers(root, overrides) -> dict[str, dict[str, object]]:
    """What every command derives, read through each command's own core: settings → value → consumer."""
    import re as regex

    from kohya_wrap.caption import JobOptions, plan_jobs
    from kohya_wrap.check import check_project
    from kohya_wrap.dataset.prep import project_settings
    from kohya_wrap.plan import build_plan
    from kohya_wrap.sdscripts.render import write_configs
    from kohya_wrap.spec.load import load_project
    from kohya_wrap.tags import load_concepts

    loaded = load_project(root, overrides)
    settings = loaded.settings
    report = check_project(loaded)
    plan = build_plan(report)
    write_configs(plan.rendered, loaded.layout)
    import toml  # the reader sd-scripts uses

    train = {k: v for section in toml.load(loaded.layout.train_config).values() for k, v in section.items()}
    dataset = toml.load(loaded.layout.dataset_config)
    general, subset = dataset["general"], dataset["datasets"][0]["subsets"][0]
    lint_text = " ".join(f.what for f in report.findings)
    single = regex.search(r"batch size of (\d+)", lint_text)
    command = list(plan.command)
    prep_settings, _ = project_settings(loaded, {"mode": "bucket"})
    lint = report.lint[0]
    return {
        "batch_size": {
            "settings": settings.batch_size,
            "plan": plan.batch_size,
            "dataset.toml": general["batch_size"],
            "train.toml": train.get("train_batch_size", settings.batch_size),
            "lint": int(single.group(1)) if single else None,
        },
        "gradient_accumulation_steps": {
            "settings": settings.gradient_accumulation_steps,
            "plan": plan.gradient_accumulation_steps,
            "train.toml": train.get("gradient_accumulation_steps", 1),
        },
        "resolution": {
            "settings": list(settings.resolution),
            "train.toml": [int(v) for v in train["resolution"].split(",")],
            "dataset.toml": general["resolution"]
            if isinstance(general["resolution"], list)
            else [general["resolution"]] * 2,
            "prep": list(prep_settings.size),
            "grid": list(settings.sample_size),
            "plan buckets": list(plan.bucket.resolution),
        },
        "buckets": {
            "settings": settings.bucket,
            "plan": plan.bucket,
            "prep": prep_settings.buckets,
            "lint": sorted(lint.buckets) == sorted(((b.resolution, b.images) for b in plan.math.buckets)),
        },
        "caption_extension": {
            "settings": report.concepts[0].concept.caption_extension,
            "dataset.toml": subset.get("caption_extension", general.get("caption_extension")),
            "tags": load_concepts(loaded, None)[0].extension,
            "caption": {
                p.suffix for c in plan_jobs(loaded, JobOptions(overwrite=True)) for p in (j.caption for j in c.jobs)
            },
        },
        "mixed_precision": {
            "settings": settings.mixed_precision,
            "launch": command[command.index("--mixed_precision") + 1],
            "train.toml": train.get("mixed_precision", "no"),
        },
        "total_steps": {
            "plan": plan.math.total_steps,
            "settings": settings.max_train_steps
            if settings.max_train_epochs is None
            else settings.max_train_epochs * plan.math.steps_per_epoch,
        },
        "checkpoints": {
            "plan": plan.checkpoints[-1],
            "settings": settings.final_checkpoint,
            "train.toml": f"{train['output_name']}.{train['save_model_as']}",
            "cadence": (train.get("save_every_n_steps"), train.get("save_every_n_epochs"))
            == (settings.save_every_n_steps, settings.save_every_n_epochs),
        },
    }


CASES = [
    # (value, section, line, expected): each is tried in the spec, in the preset it extends, and with --set
    ("batch_size", "training", "train_batch_size = 3", 3),
    ("batch_size", "dataset", "batch_size = 4", 4),
    ("gradient_accumulation_steps", "training", "gradient_accumulation_steps = 2", 2),
    ("resolution", "dataset", "resolution = [320, 256]", [320, 256]),
    ("caption_extension", "dataset", 'caption_extension = ".caption"', ".caption"),
    ("mixed_precision", "training", 'mixed_precision = "bf16"', "bf16"),
    ("total_steps", "training", "max_train_epochs = 3", None),
    ("checkpoints", "training", 'save_model_as = "ckpt"', "mytoken_v1.ckpt"),
    ("checkpoints", "training", "save_every_n_epochs = 1", "mytoken_v1.safetensors"),
]


@pytest.mark.parametrize("place", ["spec", "preset", "--set"])
@pytest.mark.parametrize("value, section, line, expected", CASES, ids=[f"{c[0]}:{c[2].split(' =')[0]}" for c in CASES])
def test_every_consumer_reports_the_same_value(tmp_path, base_model, place, value, section, line, expected):
    root, overrides = settings_project(tmp_path, base_model, place, section, line)
    seen = consumers(root, overrides)[value]
    flags = {k: v for k, v in seen.items() if isinstance(v, bool)}
    values = {k: (sorted(v) if isinstance(v, set) else v) for k, v in seen.items() if not isinstance(v, bool)}
    assert all(flags.values()), flags
    reference = next(iter(values.values()))
    assert all(v == reference or v == [reference] for v in values.values()), values
    if expected is not None:
        assert reference == expected, values


def test_launch_precision_and_concept_caption_extension_reach_every_consumer(tmp_path, base_model):
    """Two places the table above cannot express: [launch] mixed_precision, and a concept's own
    caption_extension over [dataset]'s."""
    root, _ = settings_project(tmp_path, base_model, "spec", "launch", 'mixed_precision = "fp16"')
    seen = consumers(root, [])["mixed_precision"]
    assert set(seen.values()) == {"fp16"}, seen  # train.toml too: sd-scripts' Accelerator takes the script's value
    root, _ = settings_project(tmp_path / "b", base_model, "spec", "concept", 'caption_extension = ".caption"')
    seen = consumers(root, [])["caption_extension"]
    assert {k: (sorted(v) if isinstance(v, set) else v) for k, v in seen.items()} == {
        "settings": ".caption",
        "dataset.toml": ".caption",
        "tags": ".caption",
        "caption": [".caption"],
    }


def test_a_run_records_the_settings_plan_used(tmp_path, base_model, on_standin, monkeypatch, cli):
    from conftest import REPLAYS as FIXTURES

    monkeypatch.setenv("KOHYA_WRAP_REPLAY", str(FIXTURES / "pipe_steps.jsonl"))
    monkeypatch.setenv("KOHYA_WRAP_REPLAY_SPEED", "200")
    root, overrides = settings_project(tmp_path, base_model, "--set", "dataset", "batch_size = 3")
    planned = json.loads(cli("plan", root, "--json", *[a for o in overrides for a in ("--set", o)]).out)
    result = cli("run", root, "--plain", *[a for o in overrides for a in ("--set", o)])
    assert result.code == 0, result.err
    from kohya_wrap.training.record import find_run, read_record

    record = read_record(find_run(root / "runs", None))
    assert record.format == 2 and record.verdict == "trained"
    assert record.settings["batch_size"] == planned["batch_size"] == 3
    assert (
        record.settings["final_checkpoint"]
        == Path(planned["checkpoints"][-1]).name
        == Path(record.outputs[-1].path).name
    )
