"""`kohya-wrap compare`: a 2 × 2 sweep trained on the stand-in sd-scripts (replaying a recorded real run) →
one page with every trial, the settings that differ and only those, verdicts, time and s/step, the loss
curves overlaid; the image grid rendered by the stand-in gen_img.py (trials × weights, weight 0 once, the
cell cache reused by a second compare); runs chosen by id; the errors; and, with the `browser` marker, the
page in headless Chromium."""

from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path

import pytest

from conftest import REPLAYS, load_page, recorded_run_project
from kohya_wrap.cli import main
from test_report import Page, decode

VARIED = ["training.learning_rate", "training.network_dim"]
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def sweep_project(tmp_path_factory, trainer):
    """One finished 4-trial sweep per module (trained once: ~3 s), in an environment isolated as conftest's
    _isolated_env isolates each test. Each trial's final LoRA file gets its own bytes afterwards (the
    stand-in trainer writes the same bytes for every trial; real trials differ)."""
    home = tmp_path_factory.mktemp("compare-home")
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("HF_HOME", "hf")):
            mp.setenv(var, str(home / sub))
        mp.setenv("XDG_CACHE_HOME", str(home / "cache"))
        mp.setenv("KOHYA_WRAP_VENDOR", str(home / "vendor"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.delenv("KOHYA_WRAP_PRESETS", raising=False)
        mp.setenv("KOHYA_WRAP_SD_SCRIPTS", str(trainer))
        mp.setenv("KOHYA_WRAP_SD_PYTHON", sys.executable)
        mp.setenv("KOHYA_WRAP_REPLAY", str(REPLAYS / "pipe_steps.jsonl"))
        mp.setenv("KOHYA_WRAP_REPLAY_SPEED", "400")
        root = recorded_run_project(tmp_path_factory.mktemp("compare") / "my 项目")
        args = ["sweep", str(root), "--plain"]
        for key, values in zip(VARIED, ("1e-4,3e-4", "4,8"), strict=True):
            args += ["--vary", f"{key}={values}"]
        try:
            main(args)
        except SystemExit as exc:
            assert not exc.code, exc.code
    sweep_dir = next(p for p in (root / "sweeps").iterdir() if (p / "sweep.json").is_file())
    sweep = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    for trial in sweep["trials"]:
        (root / "model" / f"{trial['output_name']}.safetensors").write_bytes(f"LoRA of {trial['name']}".encode())
    return root, sweep_dir, sweep


def trial_runs(sweep_dir: Path) -> dict[str, str]:
    runs = {}
    for n in range(1, 5):
        status = json.loads((sweep_dir / "trials" / f"{n}.json").read_text(encoding="utf-8"))
        runs[f"t{n}"] = status["run_ids"][-1]
    return runs


def setting_columns(page: Page, html: str) -> list[str]:
    table = html.split('<table class="trials">', 1)[1].split("</tr>", 1)[0]
    return [cell.split("</th>", 1)[0] for cell in table.split('<th class="setting">')[1:]]


def test_compare_without_images_shows_every_trial_what_differs_and_the_numbers(sweep_project, cli):
    root, sweep_dir, sweep = sweep_project
    result = cli("compare", root, "--no-images")
    assert result.code == 0, result.out + result.err
    page_file = sweep_dir / "compare.html"
    assert f"compare: {page_file}" in " ".join(result.out.split())
    html = page_file.read_text(encoding="utf-8")
    page = Page(html)

    # every trial, once, in the sweep's order, each with its run id and verdict
    rows = page.find("tr", class_="trial")
    assert [r["data-trial"] for r in rows] == ["t1", "t2", "t3", "t4"]
    for run_id in trial_runs(sweep_dir).values():
        assert run_id in page.texts
    assert page.texts.count("trained") >= 4

    # the settings that differ, and only those: not the LoRA name, nor what every trial shares
    assert setting_columns(page, html) == VARIED
    for key in ("name", "training.seed", "training.max_train_steps", "training.cache_latents", "dataset.resolution"):
        assert f">{key}<" not in html
    values = {(t["values"]["training.learning_rate"], t["values"]["training.network_dim"]) for t in sweep["trials"]}
    assert values == {(1e-4, 4), (1e-4, 8), (3e-4, 4), (3e-4, 8)}
    assert "0.0003" in page.texts and "0.0001" in page.texts

    # s/step: the median of the run's metrics.csv column, and the time
    metrics = (root / "runs" / trial_runs(sweep_dir)["t1"] / "metrics.csv").read_text(encoding="utf-8")
    per_step = statistics.median(float(line.split(",")[4]) for line in metrics.splitlines()[1:])
    assert f"{per_step:.3g}" in page.texts
    assert "6 / 6" in page.texts

    # the loss curves overlaid: one smoothed and one raw line per trial, each trial its own colour
    assert len(page.find("svg", id="loss-smoothed")) == 1 and len(page.find("svg", id="loss-raw")) == 1
    smoothed = [a for t, a in page.tags if t == "polyline" and "loss-ema" in a.get("class", "")]
    raw = [a for t, a in page.tags if t == "polyline" and "loss-raw" in a.get("class", "")]
    assert len(smoothed) == 4 and len(raw) == 4
    assert len({a["stroke"] for a in smoothed}) == 4
    assert all(int(a["data-points"]) == 6 for a in raw)

    # no images: the page says so; nothing was rendered; self-contained (no external resources)
    assert "not rendered (--no-images)" in " ".join(page.texts)
    assert not page.images("cell")
    assert not [a for t, a in page.tags if t in ("script", "link")]
    assert not list(root.glob("runs/*/grids"))


def test_compare_json_and_an_untrained_trial(sweep_project, cli):
    """A trial that has not run (a sweep stopped before it) is on the page with its status; --json prints
    the page's data."""
    root, sweep_dir, _ = sweep_project
    copy = sweep_dir.parent / "00000000-000000"  # sorts first: the latest sweep stays the real one
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("compare.html"))
    data = json.loads((copy / "sweep.json").read_text(encoding="utf-8"))
    data["id"] = copy.name
    data["trials"][3]["values"]["training.network_dim"] = XSS  # a value shown on the page is escaped
    (copy / "sweep.json").write_text(json.dumps(data), encoding="utf-8")
    (copy / "trials" / "4.json").unlink()
    status = json.loads((copy / "trials" / "3.json").read_text(encoding="utf-8"))
    status.update(status="failed", error=f"sd-scripts exited with 1 {XSS}")
    (copy / "trials" / "3.json").write_text(json.dumps(status), encoding="utf-8")

    result = cli("compare", root, "--sweep", copy.name, "--no-images", "--json")
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert out["page"] == str(copy / "compare.html") and out["sweep"] == copy.name
    assert out["differing"] == VARIED
    assert [r["label"] for r in out["runs"]] == ["t1", "t2", "t3", "t4"]
    assert [r["status"] for r in out["runs"]] == ["trained", "trained", "failed", "pending"]
    assert out["runs"][2]["error"] == f"sd-scripts exited with 1 {XSS}"
    t4 = out["runs"][3]
    assert (
        t4["run_id"] is None
        and t4["verdict"] is None
        and t4["settings"] == {key: str(data["trials"][3]["values"][key]) for key in VARIED}
    )
    t1 = out["runs"][0]
    assert t1["verdict"] == "trained" and t1["steps"] == {"reached": 6, "planned": 6}
    assert (
        t1["seconds_per_step"] > 0
        and t1["duration_s"] is not None
        and t1["final_checkpoint"].endswith("-t1.safetensors")
    )
    assert out["images"]["skipped"] is True

    html = (copy / "compare.html").read_text(encoding="utf-8")
    page = Page(html)
    assert [r["data-trial"] for r in page.find("tr", class_="trial")] == ["t1", "t2", "t3", "t4"]
    assert "pending" in page.texts and f"sd-scripts exited with 1 {XSS}" in page.texts
    assert XSS not in html and "&lt;script&gt;" in html and not page.find("script")
    assert len([a for t, a in page.tags if t == "polyline" and "loss-ema" in a.get("class", "")]) == 3


def test_compare_renders_trials_by_weights_and_reuses_the_cell_cache(sweep_project, cli, on_standin, monkeypatch):
    root, sweep_dir, _ = sweep_project
    shutil.rmtree(root / ".kohya-wrap" / "grid-cache", ignore_errors=True)
    log = root.parent / "gen.log"
    log.unlink(missing_ok=True)
    monkeypatch.setenv("KOHYA_WRAP_STANDIN_GEN_LOG", str(log))

    result = cli("compare", root, "--json")
    assert result.code == 0, result.out + result.err
    out = json.loads(result.out)
    images = out["images"]
    assert images["weights"] == [0.0, 0.5, 1.0] and images["prompts"] == ["mytoken woman"]
    assert images["seed"] == 1  # the spec's [sample] seed
    # 4 trials × weights 0.5 and 1, and weight 0 (the base model) once for all of them
    assert images["rendered"] == 9 and images["failed"] == 0
    assert len(log.read_text(encoding="utf-8").split()) == 9

    page = Page((sweep_dir / "compare.html").read_text(encoding="utf-8"))
    cells = page.images("cell")
    assert len(cells) == 12  # 4 rows × 3 weights
    colours = [decode(a["src"]).convert("RGB").getpixel((5, 5)) for a in cells]
    by_row = [colours[i : i + 3] for i in range(0, 12, 3)]
    assert len({row[0] for row in by_row}) == 1  # weight 0: the same base image in every row
    assert len({row[2] for row in by_row}) == 4  # weight 1: each trial's own LoRA
    assert [r["data-trial"] for r in page.find("tr", class_="image-row")] == ["t1", "t2", "t3", "t4"]
    assert "weight 0 (base)" in page.texts and "mytoken woman" in page.texts

    # again: every cell from grid's cache, nothing rendered
    again = cli("compare", root, "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["images"]["rendered"] == 0 and json.loads(again.out)["images"]["cached"] == 12
    assert len(log.read_text(encoding="utf-8").split()) == 9
    assert len(Page((sweep_dir / "compare.html").read_text(encoding="utf-8")).images("cell")) == 12


def test_compare_runs_by_id(sweep_project, cli):
    """Any runs, chosen by id: the settings that differ between those runs only."""
    root, sweep_dir, sweep = sweep_project
    runs = trial_runs(sweep_dir)
    t1, t2 = sweep["trials"][0], sweep["trials"][1]
    same = [k for k in VARIED if t1["values"][k] == t2["values"][k]]
    differ = [k for k in VARIED if t1["values"][k] != t2["values"][k]]
    assert len(same) == 1 and len(differ) == 1  # the grid's order: t1 and t2 differ in one setting
    result = cli("compare", root, runs["t1"], runs["t2"], "--no-images", "--json")
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert out["sweep"] is None and out["differing"] == differ
    assert [r["label"] for r in out["runs"]] == [runs["t1"], runs["t2"]]
    page_file = Path(out["page"])
    assert page_file.parent == root / "runs" and page_file.name.startswith("compare-")
    assert cli("runs", root).code == 0  # a page in runs/ is not taken for a run


def test_compare_errors(sweep_project, cli, tmp_path):
    root, _, _ = sweep_project
    for args, wanted in (
        (("nope",), "no such run record"),
        (("../x",), "no such run record"),
        (("--sweep", "nope"), "no sweep nope"),
        (("--sweep", "x", "20260101-000000"), "--sweep and RUN ids"),
        (("--weights", "a,b"), "--weights a,b"),
    ):
        result = cli("compare", root, *args, "--no-images")
        assert result.code == 2, (args, result.out, result.err)
        assert wanted in result.err and len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err

    fresh = recorded_run_project(tmp_path / "fresh")
    result = cli("compare", fresh)
    assert result.code == 2 and "no sweep has run here" in result.err


def test_compare_without_sd_scripts_writes_the_page_and_says_why(sweep_project, cli):
    """No sd-scripts to render with: the page is still written, says why once, and the exit code is 1."""
    root, sweep_dir, _ = sweep_project
    result = cli("compare", root)
    assert result.code == 1, result.out + result.err
    assert "no images" in result.out and "sd-scripts" in result.out
    html = (sweep_dir / "compare.html").read_text(encoding="utf-8")
    assert "not rendered:" in html and html.count('class="trial"') == 4


def test_ctrl_c_while_rendering_stops_compare_with_130(sweep_project, cli, monkeypatch):
    from kohya_wrap.grid import GridResult
    from kohya_wrap.report import compare_images

    root, _, _ = sweep_project
    calls = []

    def interrupted_grid(loaded, options, progress, note):
        calls.append(options.run_id)
        return GridResult(root / "runs", {"cells": [], "size": [64, 64]}, 3, 1, 0, {}, True, [])

    monkeypatch.setattr(compare_images, "make_grid", interrupted_grid)
    result = cli("compare", root)
    assert result.code == 130 and len(calls) == 1  # stopped at the first run's grid, not the next


@pytest.mark.browser
def test_compare_page_in_a_browser(chromium, sweep_project, cli, on_standin, tmp_path):
    """Headless Chromium renders the page offline with no console errors; the screenshot shows the
    coloured curves and the images."""
    from PIL import Image

    root, sweep_dir, _ = sweep_project
    assert cli("compare", root).code == 0
    page = load_page(chromium, (sweep_dir / "compare.html").as_uri(), tmp_path, "1500,2400")
    assert page.console == [], page.console
    shot = page.screenshot
    assert 'id="loss-smoothed"' in page.dom and page.dom.count('class="trial"') == 4

    image = Image.open(shot).convert("RGB")
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 24)}
    # the first two trial colours of the palette (the curves, the swatches) are on the screen
    assert (0x4E, 0x79, 0xA7) in colours and (0xF2, 0x8E, 0x2B) in colours
    assert len(Page(page.dom).images("cell")) == 12


def test_differing_settings_unit():
    """spec.json keys that differ (nested lists too), `name` never; a derived setting only where the spec
    does not already say it; "(not set)" where a spec leaves a key to the default, "?" where nothing is known."""
    from types import SimpleNamespace

    from kohya_wrap.report.compare_runs import Entry, differing_settings, flatten

    def entry(label, spec, settings=None, values=None):
        run = SimpleNamespace(spec=spec, record=SimpleNamespace(settings=settings))
        return Entry(label, "#000000", "trained", run, values or {})

    assert flatten({"a": {"b": 1}, "c": [{"d": 2}], "e": [1, 2]}) == {"a.b": 1, "c[0].d": 2, "e": [1, 2]}
    a = entry("a", {"name": "x", "training": {"lr": 1e-4, "dim": 8}, "concepts": [{"repeats": 1}]}, {"batch_size": 1})
    b = entry("b", {"name": "y", "training": {"lr": 1e-4}, "concepts": [{"repeats": 2}]}, {"batch_size": 2})
    c = entry("c", {"name": "z", "training": {"lr": 1e-4, "train_batch_size": 4}, "concepts": [{"repeats": 1}]})
    c.run.record.settings = {"batch_size": 4}
    pending = Entry("d", "#000000", "pending", None, {"training.dim": 16})
    columns, values = differing_settings([a, b, pending])
    assert columns == ["training.dim", "concepts[0].repeats", "settings.batch_size"]
    assert [v["training.dim"] for v in values] == ["8", "(not set)", "16"]
    assert [v["concepts[0].repeats"] for v in values] == ["1", "2", "?"]
    columns, _ = differing_settings([a, c])  # the spec says the batch size: no derived column for it
    assert columns == ["training.dim", "training.train_batch_size"]
