"""scripts/gpu_check.py: its parts without a GPU (nvidia-smi's answers parsed, a process tree sampled, the
config matrix, the table), a dry run and a whole measurement on the stand-in trainer (default suite); the
pipeline with the real sd-scripts on the CPU (markers `sdscripts`, `slow`); and the check itself on a
CUDA GPU (marker `gpu`, skipped without one)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REAL_SD_PYTHON, REAL_SD_SCRIPTS, REPO
from kohya_wrap.sdscripts.tinymodel import MARKERS, TOKENIZER_CACHE_NAMES

SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))
parts = importlib.import_module("gpu_check_parts")
gpu_check = importlib.import_module("gpu_check")

FULL_PROBE = {
    "torch": {"accelerator": "cuda", "version": "2.7.0", "devices": [{"name": "NVIDIA H100", "bf16": True}]},
    "xformers": {"installed": True, "ok": True, "version": "0.0.30"},
    "bitsandbytes": {"installed": True, "ok": True, "version": "0.46.0"},
}


# ---------------------------------------------------------------------------------------------- nvidia-smi


def test_compute_apps_parsed_with_na_and_no_processes():
    assert parts.parse_compute_apps("1234, 5120\n5678, 300\n") == {1234: 5120, 5678: 300}
    # one process on two GPUs is summed; a memory nvidia-smi cannot read counts 0 but the process is seen
    assert parts.parse_compute_apps("1234, 100\n1234, 200\n77, [N/A]\n") == {1234: 300, 77: 0}
    assert parts.parse_compute_apps("") == {}
    assert parts.parse_compute_apps("No running processes found\n") == {}
    assert parts.parse_compute_apps("[Insufficient Permissions], [N/A]\n") == {}


def test_gpu_memory_parsed():
    assert parts.parse_gpu_memory("1024\n2048\n") == 3072
    assert parts.parse_gpu_memory("[N/A]\n") is None
    assert parts.parse_gpu_memory("") is None
    assert parts.parse_gpu_memory("500\n[Not Supported]\n") == 500


def fake_proc(root: Path, parents: dict[int, int]) -> Path:
    for pid, ppid in parents.items():
        (root / str(pid)).mkdir(parents=True)
        # a command name with spaces and a parenthesis, as "python (x) y" can be
        (root / str(pid) / "stat").write_text(f"{pid} (py (x) y) S {ppid} {pid} {pid} 0 -1", encoding="utf-8")
    (root / "self").mkdir()
    return root


def test_process_tree_follows_every_descendant(tmp_path):
    proc = fake_proc(tmp_path / "proc", {10: 1, 11: 10, 12: 11, 13: 11, 20: 1, 21: 20})
    assert parts.process_tree(10, proc) == {10, 11, 12, 13}
    assert parts.process_tree(99, proc) == {99}


def test_sampler_peak_of_the_tree_else_the_device_rise(tmp_path):
    proc = fake_proc(tmp_path / "proc", {10: 1, 11: 10, 30: 1})
    answers = {
        "apps": ["11, 1000\n30, 9000\n", "11, 3000\n30, 9000\n", "11, 2000\n"],
        "gpu": ["500", "500", "9000", "20500"],
    }

    def ask(command):
        return answers["apps" if "--query-compute-apps" in command[1] else "gpu"].pop(0)

    sampler = parts.VramSampler(ask=ask, proc=proc)
    sampler.root = 10
    for _ in range(3):
        sampler.sample()
    assert (sampler.peak_mib, sampler.source) == (3000, "processes")  # PID 30 is not ours

    # a container: nvidia-smi lists PIDs of another namespace, or none → the GPU's rise above the baseline
    answers = {"apps": ["4242, 800\n", ""], "gpu": ["700", "1700", "5700"]}
    sampler = parts.VramSampler(ask=ask, proc=proc)
    sampler.root = 10
    sampler.sample()
    sampler.sample()
    assert (sampler.peak_mib, sampler.source) == (5000, "device")

    answers = {"apps": [""], "gpu": ["", ""]}
    sampler = parts.VramSampler(ask=ask, proc=proc)
    sampler.root = 10
    sampler.sample()
    assert (sampler.peak_mib, sampler.source) == (None, "none")


def test_sampler_samples_in_the_background_until_stopped(tmp_path):
    proc = fake_proc(tmp_path / "proc", {10: 1})
    calls = []

    def ask(command):
        calls.append(command)
        return "10, 64\n" if "--query-compute-apps" in command[1] else "64"

    sampler = parts.VramSampler(interval=0.01, ask=ask, proc=proc).start(10)
    while sampler.samples < 3:
        pass
    sampler.stop()
    count = sampler.samples
    assert sampler.peak_mib == 64 and not sampler._thread.is_alive() and sampler.samples == count


# ---------------------------------------------------------------------------------------------- the matrix


def names(configs) -> list[str]:
    return [c.name for c in configs]


def test_matrix_with_everything():
    configs, notes = parts.matrix(parts.Capabilities.from_probe(FULL_PROBE))
    assert names(configs) == [
        f"{f}-{p}-{a}-AdamW8bit" for f in ("sd15", "sdxl") for p in ("fp16", "bf16") for a in ("sdpa", "xformers")
    ]
    assert notes == []


def test_matrix_without_bf16_xformers_or_bitsandbytes():
    probe = json.loads(json.dumps(FULL_PROBE))
    probe["torch"]["devices"] = [{"name": "Tesla T4", "bf16": False}]
    probe["xformers"] = {"installed": False}
    probe["bitsandbytes"] = {"installed": True, "ok": False, "error": "CUDA Setup failed"}
    caps = parts.Capabilities.from_probe(probe)
    configs, notes = parts.matrix(caps, ["sd15"])
    assert names(configs) == ["sd15-fp16-sdpa-AdamW"]
    assert notes == [
        "bf16 left out: Tesla T4 has no native bf16",
        "xformers left out: not installed in sd-scripts' venv",
        "AdamW instead of AdamW8bit: bitsandbytes does not run: CUDA Setup failed",
    ]


def test_no_cuda_device_is_seen_from_the_probe():
    assert not parts.Capabilities.from_probe({"torch": {"accelerator": "cpu", "devices": []}}).cuda
    assert not parts.Capabilities.from_probe({}).cuda
    assert parts.Capabilities.from_probe(FULL_PROBE).device == "NVIDIA H100"


def test_spec_sets_what_users_run(tmp_path):
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    config = parts.Config("sdxl", "bf16", "xformers", "AdamW8bit")
    spec = tomllib.loads(parts.spec_text(config, tmp_path / "m", tmp_path / "t", 12, 1024, 2))
    assert spec["model"] == {"base": (tmp_path / "m").as_posix(), "family": "sdxl"}
    assert spec["dataset"]["resolution"] == 1024
    training = spec["training"]
    assert training["mixed_precision"] == "bf16" and training["xformers"] is True and "sdpa" not in training
    assert training["optimizer_type"] == "AdamW8bit"
    assert training["cache_latents_to_disk"] is True and training["gradient_checkpointing"] is True
    assert training["max_train_steps"] == 12 and training["train_batch_size"] == 2
    assert training["network_train_unet_only"] is True and training["cache_text_encoder_outputs"] is True
    sd15 = tomllib.loads(parts.spec_text(parts.Config("sd15", "fp16", "sdpa", "AdamW"), tmp_path, tmp_path, 4, 512, 1))
    assert sd15["training"]["sdpa"] is True and "network_train_unet_only" not in sd15["training"]


# ---------------------------------------------------------------------------------------------- results


def test_steady_seconds_per_step_leaves_the_first_steps_out():
    assert parts.steady_seconds_per_step([(1, 9.0), (2, 3.0), (3, 0.5), (4, 0.4), (5, 0.6)]) == 0.5
    assert parts.steady_seconds_per_step([(1, 9.0), (2, 3.0)]) == 6.0  # a run too short for that: all of it
    assert parts.steady_seconds_per_step([(1, None), (3, None)]) is None
    assert parts.steady_seconds_per_step([]) is None


def test_table_and_markdown():
    config = parts.Config("sd15", "fp16", "sdpa", "AdamW8bit")
    ok = parts.Result(config, parts.Measured(22.0, 0, 0.125, 6144, "processes"), parts.Measured(20.0, 0, 0.12, 6100))
    failed = parts.Result(parts.Config("sdxl", "fp16", "sdpa", "AdamW8bit"), parts.Measured(5.0, 2), error="exit 2")
    assert ok.overhead == 1.1 and failed.overhead is None
    text = parts.table([ok, failed])
    header, first, second = (line.split() for line in text.splitlines())
    assert header[:3] == ["config", "s/step", "s/step"]
    assert first == "sd15-fp16-sdpa-AdamW8bit 0.125 0.120 6,144 MiB 6,100 MiB 22.0 s 20.0 s 1.100".split()
    assert second == "sdxl-fp16-sdpa-AdamW8bit (failed) – – – – 5.0 s – –".split()
    md = parts.markdown([ok, failed], ["GPU: X"])
    assert md.startswith("- GPU: X\n\n| config | s/step |") and md.count("\n|") == 4
    assert md.endswith("\nsdxl-fp16-sdpa-AdamW8bit failed: exit 2\n")
    data = ok.as_dict()
    assert data["config"] == "sd15-fp16-sdpa-AdamW8bit" and data["overhead_ratio"] == 1.1
    assert data["kohya_wrap_run"]["peak_vram_mib"] == 6144 and data["direct"]["wall_s"] == 20.0


# ---------------------------------------------------------------------------------------------- on the stand-in

GPU_OPTIONS = ("--cache_latents_to_disk", "--network_train_unet_only", "--cache_text_encoder_outputs")


@pytest.fixture
def gpu_standin(trainer, tmp_path, monkeypatch) -> Path:
    """The stand-in trainer with the options the check sets, an sdxl_train_network.py, and demo models
    in the cache (marked complete, so nothing is built)."""
    root = tmp_path / "sd-scripts"
    shutil.copytree(trainer, root)
    known = "".join(path.read_text(encoding="utf-8") for path in root.rglob("*.py"))
    added = "".join(
        f'    parser.add_argument("{o}", action="store_true")\n' for o in GPU_OPTIONS if f'"{o}"' not in known
    )
    script = (root / "train_network.py").read_text(encoding="utf-8")
    script = script.replace("    return parser\n", added + "    return parser\n", 1)
    (root / "train_network.py").write_text(script, encoding="utf-8")
    (root / "sdxl_train_network.py").write_text(script, encoding="utf-8")
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", str(root))
    monkeypatch.setenv("KOHYA_WRAP_SD_PYTHON", sys.executable)
    from kohya_wrap.demo import demo_model_dirs

    for family in ("sd15", "sdxl"):
        model, tokenizers = demo_model_dirs(family)
        model.mkdir(parents=True)
        (model / MARKERS[family]).write_text("{}", encoding="utf-8")
        (model / "model_index.json").write_text("{}", encoding="utf-8")
        for name in TOKENIZER_CACHE_NAMES[family]:
            (tokenizers / name).mkdir(parents=True, exist_ok=True)
    return root


def test_without_cuda_nothing_is_measured(gpu_standin, capsys):
    """This venv's torch is a CPU build: one line, exit 0; 2 with --require-gpu."""
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("no CUDA device: nothing measured (no CUDA device in sd-scripts' venv")
    assert gpu_check.main(["--require-gpu"]) == 2
    assert "no CUDA device: nothing measured" in capsys.readouterr().out


def test_dry_run_prints_each_config_and_both_commands(gpu_standin, tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--work", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    configs = [line[:-1] for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert configs == [
        f"{f}-{p}-{a}-AdamW8bit" for f in ("sd15", "sdxl") for p in ("fp16", "bf16") for a in ("sdpa", "xformers")
    ]
    direct = [line for line in out.splitlines() if line.startswith("  direct:")]
    assert len(direct) == 8 and all("--config_file" in line and "accelerate" in line for line in direct)
    assert sum("sdxl_train_network.py" in line for line in direct) == 4
    assert all(" -m kohya_wrap run " in line for line in out.splitlines() if line.startswith("  kohya-wrap:"))
    # what check says here is shown, not hidden: fp16 on this CPU-only venv, no xformers, no bitsandbytes
    assert "check here: training.mixed_precision: fp16 needs a CUDA device" in out
    assert "check here: training.xformers: xformers is not installed" in out
    rendered = (tmp_path / "work" / "sdxl-bf16-sdpa-AdamW8bit" / "kohya-wrap.toml").read_text(encoding="utf-8")
    assert "cache_latents_to_disk = true" in rendered and "resolution = 1024" in rendered


def test_a_measurement_on_the_stand_in(gpu_standin, replay, tmp_path, capsys, monkeypatch):
    """The whole pipeline without a GPU: `kohya-wrap run`, its command.json, the same argv launched
    directly, both logs parsed, the JSON and Markdown written (the stand-in replays a recorded run)."""
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", str(gpu_standin))  # `replay` set the plain stand-in
    replay("pipe_steps", speed=200)
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    args = ["--assume-gpu", "--only", "sd15-bf16", "--resolution", "64", "--steps", "6", "--work", str(tmp_path / "w")]
    code = gpu_check.main([*args, "--json", str(out_json), "--markdown", str(out_md)])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads(out_json.read_text(encoding="utf-8"))
    [result] = data["results"]
    assert result["config"] == "sd15-bf16-sdpa-AdamW" and result["error"] is None
    for side in ("kohya_wrap_run", "direct"):
        assert result[side]["exit_code"] == 0 and result[side]["steps"] == 6
        assert result[side]["seconds_per_step"] > 0 and result[side]["vram_source"] == "none"
    assert result["overhead_ratio"] > 0
    assert "AdamW instead of AdamW8bit" in out and "sd15-bf16-sdpa-AdamW" in out_md.read_text(encoding="utf-8")
    # the direct launch ran what kohya-wrap recorded (command.json)
    run_dir = next(p for p in (tmp_path / "w" / "sd15-bf16-sdpa-AdamW" / "runs").iterdir() if p.is_dir())
    assert json.loads((run_dir / "command.json").read_text(encoding="utf-8"))["argv"][0] == sys.executable


def test_cached_latents_are_removed_between_the_two_launches(tmp_path):
    """cache_latents_to_disk writes .npz files beside the images: the direct launch must encode them again."""
    folder = tmp_path / "image" / "1_kwgpu shape"
    folder.mkdir(parents=True)
    for name in ("a.png", "a.txt", "a.npz", "b_1024x1024_sdxl.npz"):
        (folder / name).write_bytes(b"x")
    gpu_check.clear_cached_latents(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a.txt"]


# ---------------------------------------------------------------------------------------------- real sd-scripts


def sd_env(tmp_path) -> dict[str, str]:
    from conftest import TEST_CACHE

    return dict(
        os.environ,
        KOHYA_WRAP_SD_SCRIPTS=str(REAL_SD_SCRIPTS),
        KOHYA_WRAP_SD_PYTHON=str(REAL_SD_PYTHON or ""),
        XDG_CACHE_HOME=str(TEST_CACHE / "xdg"),
    )


def real_sdscripts_or_skip() -> None:
    if not REAL_SD_SCRIPTS or not REAL_SD_PYTHON or not Path(REAL_SD_SCRIPTS, "train_network.py").is_file():
        pytest.skip("set KOHYA_WRAP_SD_SCRIPTS and KOHYA_WRAP_SD_PYTHON")


@pytest.mark.sdscripts
@pytest.mark.slow
def test_the_pipeline_with_the_real_sd_scripts_on_the_cpu(tmp_path):
    """The real train_network.py through `kohya-wrap run` and directly, at 64 px on the CPU (~60–200 s)."""
    real_sdscripts_or_skip()
    out = tmp_path / "r.json"
    command = [sys.executable, str(SCRIPTS / "gpu_check.py"), "--assume-gpu", "--only", "sd15-bf16-sdpa"]
    command += ["--resolution", "64", "--steps", "4", "--json", str(out)]
    result = subprocess.run(command, env=sd_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [measured] = json.loads(out.read_text(encoding="utf-8"))["results"]
    for side in ("kohya_wrap_run", "direct"):
        assert measured[side]["exit_code"] == 0 and measured[side]["steps"] == 4
        assert measured[side]["seconds_per_step"] > 0


@pytest.mark.gpu
def test_the_gpu_check(tmp_path):
    """The check itself, on a CUDA GPU: every config of the matrix trains through kohya-wrap and directly,
    each with s/step and peak VRAM (~8 min on an H200)."""
    real_sdscripts_or_skip()
    cuda = subprocess.run(
        [str(REAL_SD_PYTHON), "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True
    )
    if cuda.stdout.strip() != "True":
        pytest.skip(f"no CUDA device in sd-scripts' venv ({REAL_SD_PYTHON})")
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no nvidia-smi")
    out = tmp_path / "gpu.json"
    steps = os.environ.get("KOHYA_WRAP_GPU_STEPS", "12")
    command = [sys.executable, str(SCRIPTS / "gpu_check.py"), "--require-gpu", "--steps", steps, "--json", str(out)]
    command += ["--markdown", str(tmp_path / "gpu.md")]
    result = subprocess.run(command, env=sd_env(tmp_path), capture_output=True, text=True, timeout=3600)
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert {r["family"] for r in results} == {"sd15", "sdxl"}
    for measured in results:
        for side in ("kohya_wrap_run", "direct"):
            assert measured[side]["exit_code"] == 0 and measured[side]["seconds_per_step"] > 0
            assert measured[side]["peak_vram_mib"] > 0
        assert 0.5 < measured["overhead_ratio"] < 2
