"""`kohya-wrap sweep` and `kohya-wrap queue` through the real entry point, on the stand-in sd-scripts that
replays recordings of real runs: trials, their records and LoRA names, failures, Ctrl-C and --resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPLAYS, recorded_run_project
from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.spec.sweep import parse_vary
from kohya_wrap.sweep.space import sample_trials, toml_value
from kohya_wrap.sweep.state import latest_sweep

VARY = ("--vary", "training.learning_rate=1e-4,3e-4", "--vary", "training.network_dim=4,8")


@pytest.fixture
def project(tmp_path) -> Path:
    return recorded_run_project(tmp_path / "my sweep 项目")


def manifests(root: Path) -> list[dict]:
    found = [json.loads(p.read_text(encoding="utf-8")) for p in (root / "runs").glob("*/manifest.json")]
    return sorted(found, key=lambda m: (m["sweep"]["trial"] if m.get("sweep") else 0, m["started"]))


def test_a_two_by_two_sweep_runs_four_labelled_trials_with_their_own_lora_files(replay, project, cli):
    replay("pipe_steps", speed=200)
    result = cli("sweep", project, *VARY, "--plain")
    assert result.code == 0, result.out + result.err
    records = manifests(project)
    assert len(records) == 4 and all(r["verdict"] == "trained" for r in records)
    labels = [r["sweep"] for r in records]
    assert [label["trial"] for label in labels] == [1, 2, 3, 4] and {label["of"] for label in labels} == {4}
    combos = {(label["values"]["training.learning_rate"], label["values"]["training.network_dim"]) for label in labels}
    assert combos == {(1e-4, 4), (1e-4, 8), (3e-4, 4), (3e-4, 8)}
    finals = [Path(r["outputs"][-1]["path"]).name for r in records]
    assert len(set(finals)) == 4 and all((project / "model" / name).is_file() for name in finals)
    # each trial's run trained what its label says: the rendered config holds the trial's values
    for record in records:
        train_toml = (project / "runs" / record["run_id"] / "train.toml").read_text(encoding="utf-8")
        assert f"network_dim = {record['sweep']['values']['training.network_dim']}" in train_toml
        assert "cache_latents_to_disk = true" in train_toml
    sweep = latest_sweep(project)
    assert [s.status for s in sweep.statuses()] == ["trained"] * 4
    listing = cli("runs", project).out
    assert listing.startswith(f"sweep {sweep.id}: 4 of 4 trial(s) trained")
    assert "  t1 training.learning_rate=" in listing and "  t4 " in listing


def test_the_sweep_table_in_the_spec_and_dry_run(project, cli, on_standin):
    spec = project / "kohya-wrap.toml"
    spec.write_text(
        spec.read_text(encoding="utf-8") + '[sweep]\nseed = 3\n"training.network_dim" = [4, 8, 16]\n',
        encoding="utf-8",
    )
    result = cli("sweep", project, "--dry-run", "--json")
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    assert sorted(t["values"]["training.network_dim"] for t in shown["trials"]) == [4, 8, 16]
    assert [t["name"] for t in shown["trials"]] == ["t1", "t2", "t3"]
    assert not (project / "sweeps").exists() and not list((project / "runs").glob("*"))  # a dry run writes nothing
    again = json.loads(cli("sweep", project, "--dry-run", "--json").out)
    assert [t["values"] for t in again["trials"]] == [t["values"] for t in shown["trials"]]  # seeded: same order


@pytest.mark.parametrize(
    "table, expected",
    [
        ('"training.network_dim" = 8', '"training.network_dim": expected a non-empty list'),
        ("network_dim = [4, 8]", '"network_dim": not a setting\'s path'),
        ('"training.network_dim" = [4, 4]', "a value is listed twice"),
        ('"training.learning_rate" = { low = 1e-5, high = 1e-3 }', 'a range needs sampler = "random"'),
        ('sampler = "random"\n"training.network_dim" = [4, 8]', "count: a random sweep needs how many trials"),
    ],
)
def test_a_bad_sweep_table_is_one_clear_error(project, cli, on_standin, table, expected):
    spec = project / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8") + f"[sweep]\n{table}\n", encoding="utf-8")
    result = cli("sweep", project)
    assert result.code == 2 and expected in result.err and "Traceback" not in result.err


def test_a_trial_whose_values_do_not_validate_stops_the_sweep_before_any_training(project, cli, on_standin):
    result = cli("sweep", project, "--vary", "training.network_dim=8,-1")
    assert result.code == 2, result.out
    assert "sweep trial (training.network_dim=-1)" in result.err and "training.network_dim" in result.err
    assert not list((project / "runs").glob("*")) and not (project / "sweeps").exists()


def test_a_failed_trial_is_recorded_and_the_sweep_goes_on(replay, project, cli, monkeypatch):
    replay("pipe_steps", speed=200)
    monkeypatch.setenv("KOHYA_WRAP_REPLAY_IF", f"network_dim = 8::{REPLAYS / 'fail_missing_model.jsonl'}")
    result = cli("sweep", project, *VARY, "--plain")
    assert result.code == 1, result.out
    sweep = latest_sweep(project)
    by_dim = [(t.values["training.network_dim"], s.status) for t, s in zip(sweep.trials, sweep.statuses(), strict=True)]
    assert sorted(by_dim) == [(4, "trained"), (4, "trained"), (8, "failed"), (8, "failed")]
    assert "missing" in (sweep.status(sweep.trials[[d for d, _ in by_dim].index(8)].index).error or "")
    assert "2 trial(s) did not train" in result.out
    assert len(manifests(project)) == 4


def test_fail_fast_stops_at_the_first_failed_trial(replay, project, cli, monkeypatch):
    replay("pipe_steps", speed=200)
    monkeypatch.setenv("KOHYA_WRAP_REPLAY_IF", f"rec_lora::{REPLAYS / 'fail_missing_model.jsonl'}")
    result = cli("sweep", project, *VARY, "--plain", "--fail-fast")
    assert result.code == 1
    assert [s.status for s in latest_sweep(project).statuses()] == ["failed", "pending", "pending", "pending"]


def test_ctrl_c_stops_the_sweep_and_resume_runs_what_is_left_once(replay, project, cli, monkeypatch):
    replay("pipe_steps", speed=200)
    monkeypatch.setenv("KOHYA_WRAP_REPLAY_IF", f'-t3"::{REPLAYS / "pipe_steps.jsonl"}::3')  # trial 3 slowly
    process = subprocess.Popen(
        [sys.executable, "-m", "kohya_wrap", "sweep", str(project), *VARY, "--plain", "--grace", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        start_new_session=True,
    )
    assert process.stdout is not None
    started = 0
    for line in process.stdout:
        started += line.startswith("── trial ")
        if started == 3 and line.startswith("step 2/"):
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "stopped at trial 3; continue with" in out
    sweep = latest_sweep(project)
    assert [s.status for s in sweep.statuses()] == ["trained", "trained", "interrupted", "pending"]
    monkeypatch.delenv("KOHYA_WRAP_REPLAY_IF")
    result = cli("sweep", project, "--resume", "--plain")
    assert result.code == 0, result.out + result.err
    assert "resuming, 2 of 4 trial(s) to run (2 trained)" in result.out
    statuses = sweep.statuses()
    assert [s.status for s in statuses] == ["trained"] * 4
    assert [len(s.run_ids) for s in statuses] == [1, 1, 2, 1]  # trial 3 ran again; 1, 2 and 4 ran once
    verdicts = [(r["sweep"]["trial"], r["verdict"]) for r in manifests(project)]
    assert verdicts == [(1, "trained"), (2, "trained"), (3, "interrupted"), (3, "trained"), (4, "trained")]
    assert cli("sweep", project, "--resume").out.startswith(f"sweep {sweep.id}: every trial is trained")


def test_a_second_sweep_in_the_same_project_is_refused_while_one_runs(replay, project, cli):
    replay("pipe_steps", speed=1)
    holder = subprocess.Popen(
        [sys.executable, "-m", "kohya_wrap", "sweep", str(project), *VARY, "--plain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ),
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        for line in holder.stdout:
            if line.startswith("── trial 1"):
                break
        time.sleep(0.5)
        result = cli("sweep", project, "--resume")
        assert result.code == 2 and "a sweep is already running here" in result.err
    finally:
        holder.send_signal(signal.SIGINT)
        holder.communicate(timeout=60)


def test_json_events_name_each_trial(replay, project, cli):
    replay("pipe_steps", speed=200)
    result = cli("sweep", project, "--vary", "training.network_dim=4,8", "--json")
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.out.splitlines()]
    kinds = [(e["event"], e.get("status")) for e in events if e.get("event") in ("sweep", "trial", "sweep_end")]
    assert kinds == [
        ("sweep", None),
        ("trial", "start"),
        ("trial", "trained"),
        ("trial", "start"),
        ("trial", "trained"),
        ("sweep_end", None),
    ]
    assert events[-1]["trained"] == 2


def test_queue_trains_projects_back_to_back_and_goes_on_past_a_failure(replay, tmp_path, cli, monkeypatch):
    replay("pipe_steps", speed=200)
    first = recorded_run_project(tmp_path / "one")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "kohya-wrap.toml").write_text('name = "x"\n', encoding="utf-8")
    third = recorded_run_project(tmp_path / "three")
    result = cli("queue", first, broken, third, "--plain")
    assert result.code == 1, result.out + result.err
    assert "queue: 2 of 3 project(s) trained" in result.out
    assert "broken/kohya-wrap.toml: 2 problems:" in result.out and "model: " in result.out  # every problem named
    assert len(manifests(first)) == 1 and len(manifests(third)) == 1
    result = cli("queue", broken, first, "--fail-fast", "--plain")
    assert result.code == 1 and "not run" in result.out and len(manifests(first)) == 1


def test_sampling_is_optunas_and_seeded():
    grid = sample_trials({"a": [1, 2], "b": ["x", "y", "z"]}, "grid", None, 0)
    assert len(grid) == 6 and len({json.dumps(t, sort_keys=True) for t in grid}) == 6
    assert sample_trials({"a": [1, 2], "b": ["x", "y", "z"]}, "grid", None, 0) == grid
    from kohya_wrap.spec.sweep import Range

    drawn = sample_trials({"lr": Range(low=1e-5, high=1e-3, log=True), "d": Range(low=4, high=32)}, "random", 5, 1)
    assert len(drawn) == 5 and all(1e-5 <= t["lr"] <= 1e-3 and isinstance(t["d"], int) for t in drawn)
    with pytest.raises(KohyaWrapError, match="varies nothing"):
        sample_trials({}, "grid", None, 0)


def test_vary_values_are_toml_and_round_trip_through_set():
    assert parse_vary(("training.learning_rate=1e-4, 3e-4", "model.vae=a.safetensors,b")) == {
        "training.learning_rate": [1e-4, 3e-4],
        "model.vae": ["a.safetensors", "b"],
    }
    assert [toml_value(v) for v in (True, 8, 1e-4, 'say "hi" 你好')] == ["true", "8", "0.0001", '"say \\"hi\\" 你好"']
    with pytest.raises(KohyaWrapError, match="expected KEY=V1,V2"):
        parse_vary(("training.network_dim",))


def test_trials_that_change_the_latents_run_together_and_cache_apart(replay, project, cli):
    result = cli(
        "sweep",
        project,
        "--vary",
        "dataset.resolution=64,128",
        "--vary",
        "training.network_dim=4,8",
        "--dry-run",
        "--json",
    )
    assert result.code == 0, result.err
    trials = json.loads(result.out)["trials"]
    groups = [(t["cache_group"], t["values"]["dataset.resolution"]) for t in trials]
    assert [g for g, _ in groups] == [1, 1, 2, 2]  # each group's trials one after another: its cache made once
    assert len({res for g, res in groups if g == 1}) == 1 and len({res for g, res in groups if g == 2}) == 1


def test_trials_render_their_configs_apart_and_leave_the_projects_config_alone(replay, project, cli):
    replay("pipe_steps", speed=200)
    assert cli("plan", project).code == 0
    planned = (project / "config" / "train.toml").read_bytes()
    assert cli("sweep", project, "--vary", "training.network_dim=4,8", "--plain").code == 0
    assert (project / "config" / "train.toml").read_bytes() == planned
    sweep = latest_sweep(project)
    for trial in sweep.trials:
        text = (sweep.folder / trial.name / "config" / "train.toml").read_text(encoding="utf-8")
        assert f"network_dim = {trial.values['training.network_dim']}" in text
        assert f'output_name = "{trial.output_name}"' in text


def test_with_two_gpus_trials_run_side_by_side_after_the_first_made_the_cache(replay, project, cli, monkeypatch):
    from kohya_wrap.sweep import progress

    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.5)
    replay("pipe_steps", speed=8)
    seen = project.parent / "gpus.log"
    monkeypatch.setenv("KOHYA_WRAP_STANDIN_ENV_LOG", str(seen))
    result = cli("sweep", project, *VARY, "--plain", "--gpus", "0,1")
    assert result.code == 0, result.out + result.err
    sweep = latest_sweep(project)
    statuses = sweep.statuses()
    assert [s.status for s in statuses] == ["trained"] * 4
    assert statuses[0].gpu == "0" and {s.gpu for s in statuses[1:]} == {"0", "1"}
    spans = {m["sweep"]["trial"]: (m["started"], m["ended"]) for m in manifests(project)}
    assert spans[1][1] <= min(spans[2][0], spans[3][0])  # the first trial alone, before the others start

    def overlap(a, b):
        return spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]

    assert overlap(2, 3)  # two trials at once, one per GPU
    assert (sweep.folder / "t2" / "trial.log").is_file()
    given = sorted(line.split()[-1] for line in seen.read_text(encoding="utf-8").splitlines())
    assert given == sorted(s.gpu for s in statuses)  # sd-scripts saw the CUDA_VISIBLE_DEVICES of its trial
    assert cli("sweep", project, "--gpus", "0,x", "--dry-run").code == 2
    lines = [line for line in result.out.splitlines() if "(GPU " in line]
    assert any(
        re.search(r"t[23] \(GPU [01]\): step \d/6 · loss [\d.]+ \| t[23] \(GPU [01]\)", line) for line in lines
    ), lines


def test_a_dataset_problem_stops_the_sweep_once_before_any_trial(replay, project, cli):
    replay("pipe_steps", speed=200)
    for caption in (project / "image" / "1_mytoken woman").glob("*.png"):
        caption.write_bytes(b"not an image")
    result = cli("sweep", project, *VARY, "--plain")
    assert result.code == 2, result.out + result.err
    assert "error(s) to fix before the sweep" in result.err
    assert not (project / "sweeps").exists() and not list((project / "runs").glob("*"))


def test_one_gpu_named_runs_every_trial_on_it(replay, project, cli, monkeypatch):
    replay("pipe_steps", speed=200)
    seen = project.parent / "gpus.log"
    monkeypatch.setenv("KOHYA_WRAP_STANDIN_ENV_LOG", str(seen))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cli("sweep", project, "--vary", "training.network_dim=4,8", "--plain", "--gpus", "3").code == 0
    assert [line.split()[-1] for line in seen.read_text(encoding="utf-8").splitlines()] == ["3", "3"]


def test_the_progress_line_of_side_by_side_trials():
    from kohya_wrap.sweep.progress import TrialProgress
    from kohya_wrap.sweep.state import Trial

    progress = TrialProgress(every_s=0)
    t1, t2 = (Trial(i, f"t{i}", f"x-t{i}", {}, [], 1) for i in (1, 2))
    progress.feed("t1", '{"event": "Progress", "step": 3, "total": 10, "loss": 0.1234}\n{"event": "Pro')
    progress.feed("t1", 'gress", "step": 4, "total": 10, "loss": null}\nnot json\n')
    assert progress.line([("GPU 0", t1), ("GPU 1", t2)]) == "   t1 (GPU 0): step 4/10 | t2 (GPU 1): starting"
    assert TrialProgress(every_s=60).line([("GPU 0", t1)]) is None  # not before its time


def test_the_states_a_sweep_keeps_to_resume_are_the_newest_only(project, cli, on_standin):
    """A state holds the optimizer's too: a trial that saves every few steps would pile them up until it
    ends; the sweep asks sd-scripts to keep the newest (unless the spec says otherwise)."""
    result = cli(
        "sweep",
        project,
        "--vary",
        "training.network_dim=4,8",
        "--set",
        "training.save_every_n_steps=2",
        "--dry-run",
        "--json",
    )
    sets = json.loads(result.out)["trials"][0]["set"]
    assert "training.save_state=true" in sets and "training.save_last_n_steps_state=2" in sets
    result = cli(
        "sweep",
        project,
        "--vary",
        "training.network_dim=4,8",
        "--set",
        "training.save_state=false",
        "--dry-run",
        "--json",
    )
    assert not any("save_state" in s for s in json.loads(result.out)["trials"][0]["set"][1:])  # the spec's own


def test_a_trial_s_last_step_is_read_from_its_own_run(replay, project, cli):
    """What a Ray sweep's progress line shows: the run a trial's process supervised, found by its pid and
    host and when it ran (one process runs every trial of a local sweep), and that run's last step."""
    from kohya_wrap.sweep.progress import latest_step

    replay("pipe_steps", speed=200)
    assert cli("sweep", project, "--vary", "training.network_dim=4,8", "--plain").code == 0
    sweep = latest_sweep(project)
    steps = [latest_step(sweep, trial) for trial in sweep.trials]
    assert all(step and step.startswith("step 6/6 · loss ") for step in steps), steps
    first_run = sweep.status(1).run_ids[0]
    loss = [json.loads(line) for line in (project / "runs" / first_run / "events.jsonl").read_text().splitlines()]
    last = [e for e in loss if e.get("event") == "Progress"][-1]
    assert steps[0] == f"step 6/6 · loss {last['loss']:.4g}"


def test_each_trial_says_what_loading_decided_as_run_does(replay, project, cli):
    """A varied max_train_steps beats the spec's max_train_epochs (which sd-scripts would let win); the
    trial says it dropped it, as `run --set training.max_train_steps=…` does."""
    replay("pipe_steps", speed=200)
    spec = project / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8") + "max_train_epochs = 2\n", encoding="utf-8")
    ran = cli("run", project, "--set", "training.max_train_steps=6", "--plain")
    said = [line for line in ran.out.splitlines() if line.startswith("note:") and "max_train_epochs" in line]
    assert ran.code == 0 and said, ran.out
    result = cli("sweep", project, "--vary", "training.max_train_steps=6,7", "--plain")
    assert result.code == 0, result.out + result.err
    notes = [line for line in result.out.splitlines() if line.startswith("note:") and "max_train_epochs" in line]
    assert len(notes) == 2 and notes[0].replace("7", "6") == said[0], (notes, said)
