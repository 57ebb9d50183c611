"""`kohya-wrap grid` on the stand-in sd-scripts (its gen_img.py paints each cell a colour computed
from everything that decides the real image): the layout, labels, one render per cell, the cache,
weight 0 shared, a failing cell, and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

NAME = "mytoken_v1"


@pytest.fixture
def project(tmp_path, base_model, on_standin, monkeypatch) -> Path:
    root = tmp_path / "grid 项目"
    (root / "model").mkdir(parents=True)
    for stem, content in (
        (f"{NAME}-step00000002", b"lora at step 2"),
        (f"{NAME}-step00000004", b"lora at step 4"),
        (NAME, b"final lora"),
    ):
        (root / "model" / f"{stem}.safetensors").write_bytes(content)
    (root / "model" / "someone-else.safetensors").write_bytes(b"not ours")
    (root / "kohya-wrap.toml").write_text(
        f'name = "{NAME}"\n[model]\nbase = "{base_model.as_posix()}"\n[[concepts]]\ntoken = "mytoken"\nclass = '
        '"woman"\nrepeats = 10\n'
        "[dataset]\nresolution = 64\n[training]\nmax_train_epochs = 1\n"
        '[sample]\nprompts = ["mytoken woman, portrait"]\nnegative = "blurry"\nsteps = 8\ncfg = 6\nseed = 3\nsampler '
        '= "euler_a"\n',  # prompts for grid only, no sampling during training
        encoding="utf-8",
    )
    monkeypatch.setenv("KOHYA_WRAP_STANDIN_GEN_LOG", str(tmp_path / "gen.log"))
    return root


def renders(project: Path) -> list[str]:
    log = project.parent / "gen.log"
    return log.read_text(encoding="utf-8").split() if log.exists() else []


def test_checkpoints_by_weights_per_seed_each_cell_once(project, cli):
    result = cli("grid", project, "--checkpoints", "step 2,step 4", "--weights", "0,1", "--seeds", "1,2", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["axes"] == {"x": "weight", "y": "checkpoint", "pages": ["seed"]}
    assert [p["label"] for p in data["pages"]] == ["seed 1", "seed 2"]
    # 2 checkpoints × 2 weights × 2 seeds, but weight 0 is the same base image for both checkpoints
    assert data["cells"] == 6 and data["rendered"] == 6 and data["cached"] == 0 and data["failed"] == 0
    assert len(renders(project)) == 6 and len(set(renders(project))) == 6

    folder = Path(data["folder"])
    grid = json.loads((folder / "grid.json").read_text(encoding="utf-8"))
    cells = {(c["checkpoint_label"], c["weight"], c["seed"]): c for c in grid["cells"]}
    assert set(cells) == {
        ("base model", 0.0, 1),
        ("base model", 0.0, 2),
        ("step 2", 1.0, 1),
        ("step 2", 1.0, 2),
        ("step 4", 1.0, 1),
        ("step 4", 1.0, 2),
    }
    assert all(
        c["status"] == "ok"
        and c["prompt"] == "mytoken woman, portrait"
        and c["negative"] == "blurry"
        and c["steps"] == 8
        and c["cfg"] == 6
        and c["sampler"] == "euler_a"
        and (c["width"], c["height"]) == (64, 64)
        for c in cells.values()
    )
    colour = {k: Image.open(folder / c["image"]).getpixel((5, 5)) for k, c in cells.items()}
    assert (
        colour[("step 2", 1.0, 1)] != colour[("step 4", 1.0, 1)] != colour[("base model", 0.0, 1)]
    )  # each LoRA, and none

    # the page: title row, a header row, 2 rows (checkpoints) × 2 columns (weights), each cell its image
    page = Image.open(folder / "grid-seed-1.png")
    (left, top), (cw, ch) = grid["pages"][0]["origin"], grid["pages"][0]["cell"]
    assert page.size == (left + 2 * cw, top + 2 * ch) and cw >= 160  # 64-px renders shown enlarged, labels readable
    assert len(page.crop((0, 0, page.width, top)).getcolors(1 << 16)) > 2  # title and column labels drawn
    assert len(page.crop((0, top, left, page.height)).getcolors(1 << 16)) > 2  # row labels drawn
    for row, checkpoint in enumerate(("step 2", "step 4")):
        for col, weight in enumerate((0.0, 1.0)):
            key = ("base model", 0.0, 1) if weight == 0 else (checkpoint, weight, 1)
            assert page.getpixel((left + col * cw + cw // 2, top + row * ch + ch // 2)) == colour[key]

    # one more weight: only its cells render; everything else comes from the cache
    again = cli("grid", project, "--checkpoints", "step 2,step 4", "--weights", "0,0.5,1", "--seeds", "1,2", "--json")
    assert again.code == 0, again.err
    data = json.loads(again.out)
    assert data["rendered"] == 4 and data["cached"] == 6 and len(renders(project)) == 10


def test_defaults_come_from_the_spec_and_the_text_output(project, cli):
    result = cli("grid", project)
    assert result.code == 0, result.err
    assert "grid: 3 cell(s) — 3 rendered, 0 from the cache, 0 failed" in result.out  # all 3 checkpoints at weight 1
    folder = Path(result.out.strip().splitlines()[-1].split(": ", 1)[1])
    grid = json.loads((folder / "grid.json").read_text(encoding="utf-8"))
    assert [c["checkpoint_label"] for c in grid["cells"]] == [
        "step 2",
        "step 4",
        "final",
    ]  # training order; not someone-else's file
    assert grid["fixed"] == {
        "prompt": "mytoken woman, portrait",
        "seed": 3,
        "cfg": 6.0,
        "steps": 8,
        "sampler": "euler_a",
    }
    assert (folder / "grid.png").is_file() and (folder / "gen.log").is_file()


def test_a_failing_cell_is_reported_and_the_others_are_kept(project, cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# one per line\nfirst prompt\nthis one will crash\nthird prompt\n", encoding="utf-8")
    result = cli("grid", project, "--checkpoints", "last", "--prompts", prompts, "--json")
    assert result.code == 1, result.err
    data = json.loads(result.out)
    assert data["rendered"] == 2 and data["failed"] == 1
    grid = json.loads((Path(data["folder"]) / "grid.json").read_text(encoding="utf-8"))
    failed = [c for c in grid["cells"] if c["status"] == "failed"]
    assert [c["prompt"] for c in failed] == ["this one will crash"]
    assert "gen_img.py exited with 1" in failed[0]["error"] and "stand-in generation failed" in failed[0]["error"]
    assert data["axes"]["x"] == "prompt"  # the only varying axis goes across


def test_a_black_cell_is_named_not_passed_off_as_a_picture(project, cli, tmp_path):
    """sd-scripts' gen_img.py writes an all-black PNG when the decoded image is NaN (a random model, a
    weight or precision the model cannot take): the file exists, so it used to count as rendered."""
    result = cli("grid", project, "--checkpoints", "last", "--prompts", "a fine one", "--prompts", "a nan one")
    assert result.code == 0, result.err
    assert "  black: " in result.out and "the image is all black: the model's output had NaNs" in result.out
    assert "1 black cell(s)" in result.out
    data = json.loads(cli("grid", project, "--checkpoints", "last", "--prompts", "a nan one", "--json").out)
    assert data["black"] == 1 and data["cached"] == 1
    grid = json.loads((Path(data["folder"]) / "grid.json").read_text(encoding="utf-8"))
    assert [c.get("black") for c in grid["cells"]] == [True]


def test_bad_input(project, cli, tmp_path):
    assert cli("grid", project, "--x", "colour").code == 2
    assert cli("grid", project, "--weights", "a,b").code == 2
    assert cli("grid", project, "--checkpoints", "step 99").code == 2
    assert cli("grid", project, "--size", "100x7").code == 2
    assert cli("grid", project, "--run", "nosuch").code == 2
    for path in (project / "model").glob(f"{NAME}*"):
        path.unlink()
    empty = cli("grid", project)
    assert empty.code == 2 and "no saved mytoken_v1*.safetensors checkpoints" in empty.err


def test_without_sd_scripts(project, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", str(tmp_path / "nowhere"))
    result = cli("grid", project)
    assert result.code == 2 and "gen_img.py" in result.err and "vendor install" in result.err
    assert os.environ["KOHYA_WRAP_SD_SCRIPTS"].endswith("nowhere")


def test_ctrl_c_keeps_the_finished_cells(trainer, tmp_path, base_model):
    """Ctrl-C while gen_img.py runs: it is stopped, and every cell finished so far is in the cache."""
    import sys

    from kohya_wrap import grid as g

    lora = tmp_path / "x-step00000002.safetensors"
    lora.write_bytes(b"lora")
    checkpoint = g.Checkpoint(lora, "step 2", "0" * 64)
    request = g.GridRequest(
        [checkpoint], [0.0, 1.0], [g.Prompt("a")], list(range(1, 31)), [7.0], [4], ["euler_a"], 64, 64
    )
    todo = {cell.key("base"): cell for cell in request.cells()}
    generator = g.Generator(Path(sys.executable), trainer, str(base_model), "sd15")
    seen = []

    def interrupt(count):
        seen.append(count)
        if len(seen) == 2:
            raise KeyboardInterrupt

    cache = tmp_path / "cache"
    env = dict(os.environ, KOHYA_WRAP_STANDIN_GEN_DELAY="0.1")  # 60 cells would take 6 s
    outcome = g.render_cells(
        generator, todo, [checkpoint], cache, tmp_path / "work", 1, tmp_path / "gen.log", on_progress=interrupt, env=env
    )
    assert outcome.interrupted and 2 <= outcome.rendered < 30  # stopped early, not run to the end
    kept = sorted(p.stem for p in cache.glob("*.png"))
    assert len(kept) == outcome.rendered and set(kept) <= set(todo)
    for path in cache.glob("*.png"):
        assert Image.open(path).size == (64, 64)


def record_run(project: Path, run_id: str, settings: dict | None, **files: str) -> Path:
    """A run record of the checkpoints in model/ (format 2 with `settings`, else format 1) and files
    beside it."""
    run_dir = project / "runs" / run_id
    run_dir.mkdir(parents=True)
    outputs = [
        {"path": str(project / "model" / f"{stem}.safetensors"), "bytes": 1}
        for stem in (f"{NAME}-step00000002", f"{NAME}-step00000004", NAME)
    ]
    record = {
        "kohya_wrap": "0.1.0",
        "run_id": run_id,
        "started": "2026-11-20T10:10:10+00:00",
        "ended": "2026-11-20T10:12:00+00:00",
        "duration_s": 110.0,
        "verdict": "trained",
        "exit_code": 0,
        "child_exit_code": 0,
        "sd_scripts": {"root": "/sd", "python": "/sd/python", "schema": "sd-scripts v0.10.1", "commit": None},
        "python": "3.11.7",
        "platform": "Linux",
        "seed": 42,
        "steps": {"planned": 4, "reached": 4},
        "final_loss": 0.1,
        "outputs": outputs,
        "dataset": [],
        **({"format": 2, "settings": settings} if settings is not None else {}),
    }
    (run_dir / "manifest.json").write_text(json.dumps(record), encoding="utf-8")
    for name, text in files.items():
        (run_dir / name.replace("_", ".")).write_text(text, encoding="utf-8")
    return run_dir


def cell_sizes(result) -> set[tuple[int, int]]:
    folder = Path(result.out.strip().splitlines()[-1].split(": ", 1)[1])
    return {(c["width"], c["height"]) for c in json.loads((folder / "grid.json").read_text(encoding="utf-8"))["cells"]}


def test_the_size_defaults_to_the_run_s_own(project, cli):
    """A run trained at 64² while the spec now says 512² (or a `--set` override trained it so): the grid
    renders at 64² and says where that came from; --size still decides, and without a run the spec does."""
    spec = project / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("resolution = 64", "resolution = 512"), encoding="utf-8")
    assert cell_sizes(cli("grid", project, "--checkpoints", "last")) == {(512, 512)}  # no run: the spec's

    record_run(project, "20261120-101010", {"resolution": [64, 64], "sample_size": [64, 64]})
    result = cli("grid", project, "--checkpoints", "last")
    assert result.code == 0, result.err
    assert (
        "size: 64×64, the resolution run 20261120-101010 trained at (its record); the spec now says 512×512 "
        "(--size to choose)" in result.out
    )
    assert "grid: 1 cell(s) at 64×64: 1 to render (gen_img.py loads the base model first)" in result.out
    assert cell_sizes(result) == {(64, 64)}
    chosen = cli("grid", project, "--checkpoints", "last", "--size", "128x96", "--json")
    assert chosen.code == 0 and json.loads(chosen.out)["size"] == [128, 96] and json.loads(chosen.out)["from_run"] == {}

    # older records have no settings: the run's spec.json, else its dataset.toml
    record_run(project, "20261121-101010", None, spec_json=json.dumps({"dataset": {"resolution": [96, 80]}}))
    result = cli("grid", project, "--checkpoints", "last", "--json")
    assert json.loads(result.out)["size"] == [96, 80]
    assert json.loads(result.out)["from_run"]["size"].endswith("run 20261121-101010 trained at (its spec.json)")
    record_run(project, "20261122-101010", None, dataset_toml="[general]\nresolution = 72\n")
    assert json.loads(cli("grid", project, "--checkpoints", "last", "--json").out)["size"] == [72, 72]


def test_piped_grid_shows_progress_before_the_first_cell(project, cli, monkeypatch):
    """gen_img.py spends its first ~20 s on a CPU loading the model: piped, grid says what it is about to
    do at once and prints a line every few seconds from the start, not only as cells finish."""
    from kohya_wrap.cli.progress import ImageProgress

    monkeypatch.setattr(ImageProgress, "PLAIN_EVERY_S", 0.1)
    monkeypatch.setenv("KOHYA_WRAP_STANDIN_GEN_DELAY", "0.6")  # before each cell, as a model load would be
    result = cli("grid", project, "--checkpoints", "step 2,step 4")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "grid: 2 cell(s) at 64×64: 2 to render (gen_img.py loads the base model first)"
    waiting = [line for line in lines if line.startswith(f"grid {NAME}: 0/2 cells · ")]
    assert len(waiting) >= 2 and all(
        line.endswith("waiting for the first cell (gen_img.py loads the model first)") for line in waiting
    )
    assert any(line.startswith(f"grid {NAME}: 1/2 cells · ") and " · ETA " in line for line in lines)
    assert "grid: 2 cell(s) — 2 rendered, 0 from the cache, 0 failed" in result.out


def test_without_sample_prompts_the_trigger_and_class_are_the_prompt(project, cli):
    """The spec `init` writes has no [sample] prompts: the README's `grid` step still renders, with what
    the LoRA learned ("mytoken woman"), and says so."""
    spec = project / "kohya-wrap.toml"
    text = spec.read_text(encoding="utf-8")
    spec.write_text(text[: text.index("[sample]")], encoding="utf-8")
    result = cli("grid", project, "--checkpoints", "last", "--weights", "0,1")
    assert result.code == 0, result.err
    assert 'prompts: "mytoken woman", each concept\'s trigger and class' in result.out
    folder = Path(result.out.strip().splitlines()[-1].split(": ", 1)[1])
    grid = json.loads((folder / "grid.json").read_text(encoding="utf-8"))
    assert {c["prompt"] for c in grid["cells"]} == {"mytoken woman"} and len(grid["cells"]) == 2


def test_the_piped_pace_holds_still_while_the_next_cell_renders(monkeypatch):
    """One cell done after 100 s (the model load included): 400 s later the line still says ~100 s a
    cell, and the ETA counts down from the time the next cell began — not a pace that grows with the wait."""
    from kohya_wrap.cli import progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    bar = progress.ImageProgress("grid", "g", 3, "quiet", waiting="loading", unit="cell")
    bar.started = 0.0
    now[0] = 100.0
    bar.advance()
    now[0] = 150.0
    assert bar.line().endswith("1/3 cells · 2:30 · 100 s/cell · ETA 2:30")
    now[0] = 500.0
    assert bar.line().endswith("1/3 cells · 8:20 · 100 s/cell · ETA 0:00")
    now[0] = 560.0
    bar.advance()  # the second took 460 s
    now[0] = 600.0
    assert bar.line().endswith("2/3 cells · 10:00 · 460 s/cell · ETA 7:00")


@pytest.mark.parametrize(
    "family, flags",
    [("sd15", []), ("sd2", ["--v2"]), ("sdxl", ["--sdxl"])],
)
def test_the_lora_loads_with_the_module_it_was_trained_with(tmp_path, family, flags):
    """The family table says which script renders and with which flag; the LoRA is loaded with the
    network module the run used (a LyCORIS or DyLoRA file is not a networks.lora one)."""
    from kohya_wrap import grid as g

    generator = g.Generator(Path("/py"), tmp_path, "base.safetensors", family, "lycoris.kohya", ["--clip_skip", "2"])
    lora = tmp_path / "x.safetensors"
    command = generator.command([lora, lora], "euler_a", tmp_path / "p.txt", tmp_path / "out", 1)
    assert command[1 : 2 + len(flags)] == [str(tmp_path / "gen_img.py"), *flags]
    modules = command[command.index("--network_module") + 1 : command.index("--network_weights")]
    assert modules == ["lycoris.kohya", "lycoris.kohya"] and command[-2:] == ["--clip_skip", "2"]


def test_the_spec_network_module_reaches_gen_img(project):
    from kohya_wrap.grid import _generator
    from kohya_wrap.spec.load import load_project

    assert _generator(load_project(project))[0].network_module == "networks.lora"  # the family's default
    spec = project / "kohya-wrap.toml"
    text = spec.read_text(encoding="utf-8")
    spec.write_text(
        text.replace("max_train_epochs = 1\n", 'max_train_epochs = 1\nnetwork_module = "networks.dylora"\n')
    )
    assert _generator(load_project(project))[0].network_module == "networks.dylora"


def test_a_flux_grid_without_sd_scripts_names_the_script_it_needs(project, cli, tmp_path, monkeypatch):
    """FLUX renders through flux_minimal_inference.py (tests/test_grid_families.py): without an sd-scripts
    that has it, grid says so and how to get one, before anything runs."""
    for var in ("KOHYA_WRAP_SD_SCRIPTS", "KOHYA_WRAP_SD_PYTHON"):  # the stand-in has no flux script: the snapshot
        monkeypatch.delenv(var, raising=False)
    spec = project / "kohya-wrap.toml"
    for name in ("clip_l", "t5xxl", "ae"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"x")
    text = spec.read_text(encoding="utf-8").replace(
        "[model]\n",
        '[model]\nfamily = "flux"\n'
        + "".join(
            f'{name} = "{(tmp_path / f"{name}.safetensors").as_posix()}"\n' for name in ("clip_l", "t5xxl", "ae")
        ),
    )
    spec.write_text(text, encoding="utf-8")
    result = cli("grid", project)
    assert result.code == 2
    assert "grid needs sd-scripts' flux_minimal_inference.py and its Python" in result.err
    assert "vendor install" in result.err and renders(project) == []


def test_cells_render_in_the_training_precision_and_shared_options_are_in_the_cache_key(project, cli):
    """A bf16 LoRA renders with --bf16; a cell cached with the checkpoint's own VAE (or in another
    precision) is not reused with another VAE: what renders every cell differently is part of its key."""
    from kohya_wrap.grid import _generator
    from kohya_wrap.spec.load import load_project

    args = ("--checkpoints", "step 2", "--weights", "0,1", "--seeds", "1")
    assert cli("grid", project, *args).code == 0 and len(renders(project)) == 2
    assert cli("grid", project, *args).code == 0 and len(renders(project)) == 2  # cached
    (project / "vae.safetensors").write_bytes(b"\0" * 16)
    assert cli("grid", project, *args, "--set", "model.vae=vae.safetensors").code == 0
    assert len(renders(project)) == 4  # rendered again: another VAE changes every image
    bf16 = ("--set", "training.mixed_precision=bf16")
    assert cli("grid", project, *args, *bf16).code == 0 and len(renders(project)) == 6
    assert "--bf16" in _generator(load_project(project, overrides=("training.mixed_precision=bf16",)))[0].extra
    assert not {"--bf16", "--fp16"} & set(_generator(load_project(project))[0].extra)
