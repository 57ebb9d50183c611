"""The pre-flight in `check` (kohya_wrap/sdscripts/preflight.py): what sd-scripts' venv and the network
would make fail only after the model loads, found before launch, and diagnosed after it when it happens
anyway (kohya_wrap/launch/diagnose.py).

The stand-in sd-scripts runs with this venv's Python, which has a CPU-only torch and neither xformers
nor bitsandbytes: the real probe finds no CUDA device there. A GPU machine is simulated by handing the
check a probe result (`fake_probe`)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import make_images
from kohya_wrap.launch import process
from kohya_wrap.launch.diagnose import diagnose
from kohya_wrap.launch.events import EventParser, LogMessage, TracebackLine
from kohya_wrap.sdscripts import hubfiles, preflight
from kohya_wrap.sdscripts.locate import SdScripts

FIXTURES = Path(__file__).parent / "fixtures" / "sdscripts_logs"
CLIP = "openai/clip-vit-large-patch14"
CLIP_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")

# sd-scripts v0.10.1's own lines naming the tokenizers (library/strategy_*.py)
STRATEGIES = {
    "strategy_sd.py": 'TOKENIZER_ID = "openai/clip-vit-large-patch14"\n'
    'V2_STABLE_DIFFUSION_ID = "stabilityai/stable-diffusion-2"  # v2 and v2.1 share the tokenizer\n',
    "strategy_sdxl.py": 'TOKENIZER1_PATH = "openai/clip-vit-large-patch14"\n'
    'TOKENIZER2_PATH = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"\n',
    "strategy_flux.py": 'CLIP_L_TOKENIZER_ID = "openai/clip-vit-large-patch14"\n'
    'T5_XXL_TOKENIZER_ID = "google/t5-v1_1-xxl"\n',
}

GPU_TORCH = {
    "installed": True,
    "version": "2.7.1+cu126",
    "cuda": "12.6",
    "hip": None,
    "xpu": None,
    "transformers": "4.54.1",
    "imported": True,
    "accelerator": "cuda",
}
T4 = {"name": "Tesla T4", "memory": 15_828_320_256, "capability": [7, 5], "bf16": False}
A100 = {"name": "NVIDIA A100-SXM4-80GB", "memory": 85_094_825_984, "capability": [8, 0], "bf16": True}


def write_project(root: Path, training: str = "", model: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "m.safetensors").write_bytes(b"x")
    base = model or (root / "m.safetensors").as_posix()
    (root / "kohya-wrap.toml").write_text(
        f'name = "pre"\n[model]\nbase = "{base}"\n[[concepts]]\ntoken = "mytoken"\nclass = "woman"\nrepeats = 1\n'
        f"[dataset]\nresolution = 64\n[training]\nmax_train_steps = 4\n{training}\n",
        encoding="utf-8",
    )
    make_images(root / "image" / "1_mytoken woman", [(64, 64)] * 3)
    return root


def findings(cli, root: Path, *args: str) -> tuple[int, list[dict]]:
    result = cli("check", root, "--json", *args)
    return result.code, json.loads(result.out)["findings"]


def at(found: list[dict], where: str, severity: str = "error") -> list[dict]:
    return [f for f in found if f["where"] == where and f["severity"] == severity]


@pytest.fixture
def fake_probe(monkeypatch):
    """Answer the probe with `parts` (what envprobe.py would print on another machine); counts the calls."""
    calls: list[list[str]] = []

    def use(**parts) -> list[list[str]]:
        def run_probe(python, wanted, cwd=None):
            calls.append(list(wanted))
            return {part: parts[part] for part in wanted}

        monkeypatch.setattr(preflight, "run_probe", run_probe)
        return calls

    return use


# ---------------------------------------------------------------------------------------------- mixed precision


def test_fp16_without_a_cuda_device_is_an_error_before_launch(on_standin, tmp_path, cli):
    """The real probe of this venv (a CPU-only torch): fp16 would fail after the model loads."""
    root = write_project(tmp_path / "p", 'mixed_precision = "fp16"')
    result = cli("check", root)
    assert result.code == 2
    line = next(line for line in result.out.splitlines() if "training.mixed_precision" in line)
    assert "fp16 needs a CUDA device" in line and "a CPU-only build" in line
    assert 'set training.mixed_precision = "no"' in line
    assert "no CUDA device: sd-scripts trains on the CPU" in result.out  # the environment, as an info line
    refused = cli("run", root, "--plain")
    assert refused.code == 2 and "training.mixed_precision" in refused.out + refused.err
    assert not (root / "runs").exists() or not any(p.is_dir() for p in (root / "runs").iterdir())
    assert cli("check", root, "--set", 'training.mixed_precision="no"').code == 0
    assert cli("check", root, "--set", 'training.mixed_precision="bf16"').code == 0  # the CPU trains in bf16


def test_launch_mixed_precision_is_named_where_it_is_set(on_standin, tmp_path, cli):
    root = write_project(tmp_path / "p")
    spec = root / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8") + '[launch]\nmixed_precision = "fp16"\n', encoding="utf-8")
    code, found = findings(cli, root)
    assert code == 2 and 'set launch.mixed_precision = "no"' in at(found, "launch.mixed_precision")[0]["fix"]


def test_the_probe_is_cached_per_venv_and_a_warm_check_starts_no_process(on_standin, tmp_path, cli, monkeypatch):
    root = write_project(tmp_path / "p", 'mixed_precision = "fp16"')
    started = time.perf_counter()
    assert cli("check", root).code == 2
    cold = time.perf_counter() - started
    cached = list(preflight.probe_cache_dir().glob("*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text(encoding="utf-8"))["torch"]["accelerator"] == "cpu"

    def no_process(*args, **kwargs):
        raise AssertionError("a warm check started a process")

    monkeypatch.setattr(process.Child, "__init__", no_process)  # every process kohya-wrap starts goes through it
    started = time.perf_counter()
    second = cli("check", root)
    warm = time.perf_counter() - started
    assert second.code == 2 and "fp16 needs a CUDA device" in second.out
    print(f"check: cold {cold:.2f} s, warm {warm:.2f} s")
    assert warm < 1.0


def test_the_cache_key_follows_the_venv_and_the_visible_devices(tmp_path, monkeypatch):
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("", encoding="utf-8")
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / "torch").mkdir(parents=True)
    (site / "torch-2.6.0+cu124.dist-info").mkdir()
    first = preflight.probe_key(python)
    assert preflight.probe_key(python) == first
    (site / "torch-2.6.0+cu124.dist-info").rename(site / "torch-2.7.1+cu126.dist-info")
    upgraded = preflight.probe_key(python)
    assert upgraded != first
    (site / "bitsandbytes-0.45.0.dist-info").mkdir()
    assert preflight.probe_key(python) != upgraded
    with_bnb = preflight.probe_key(python)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert preflight.probe_key(python) != with_bnb


def test_the_real_probe_of_this_venv(on_standin):
    """envprobe.py in this venv: a CPU-only torch (not even imported, its version.py says so), no xformers,
    no bitsandbytes."""
    started = time.perf_counter()
    found = preflight.run_probe(Path(sys.executable), ["torch", "xformers", "bitsandbytes"])
    print(f"probe: {time.perf_counter() - started:.2f} s")
    import torch

    assert found["torch"]["installed"] and found["torch"]["version"].split("+")[0] == torch.__version__.split("+")[0]
    assert found["torch"]["accelerator"] == "cpu" and found["torch"]["devices"] == []
    assert found["torch"]["transformers"]
    assert found["xformers"] == {"installed": False} and found["bitsandbytes"] == {"installed": False}


def test_a_probe_that_fails_is_a_warning_and_is_not_cached(on_standin, tmp_path, cli, monkeypatch):
    root = write_project(tmp_path / "p", 'mixed_precision = "fp16"')
    monkeypatch.setattr(
        preflight, "run", lambda argv, **kw: process.Completed(argv, 1, "", "Fatal Python error: init failed\n")
    )
    code, found = findings(cli, root)
    warning = at(found, "sd-scripts", "warning")
    assert code == 0 and "could not be probed" in warning[0]["what"] and "init failed" in warning[0]["what"]
    assert not list(preflight.probe_cache_dir().glob("*.json"))


def test_bf16_on_a_gpu_without_bf16(on_standin, tmp_path, cli, fake_probe):
    root = write_project(tmp_path / "p", 'mixed_precision = "bf16"')
    fake_probe(torch={**GPU_TORCH, "devices": [T4]})
    code, found = findings(cli, root)
    error = at(found, "training.mixed_precision")
    assert code == 2 and "GPU 0 Tesla T4 (compute capability 7.5) has none" in error[0]["what"]
    assert error[0]["fix"] == 'set training.mixed_precision = "fp16"'
    info = at(found, "environment", "info")[0]["what"]
    assert "torch 2.7.1+cu126, a CUDA 12.6 build" in info and "GPU 0 Tesla T4 (15 GiB, no bf16)" in info
    assert cli("check", root, "--set", 'training.mixed_precision="fp16"').code == 0


def test_bf16_and_fp16_on_a_gpu_with_bf16(on_standin, tmp_path, cli, fake_probe):
    root = write_project(tmp_path / "p", 'mixed_precision = "bf16"')
    fake_probe(torch={**GPU_TORCH, "devices": [A100]})
    assert cli("check", root).code == 0
    assert cli("check", root, "--set", 'training.mixed_precision="fp16"').code == 0


def test_full_fp16_and_full_bf16_against_the_precision_and_the_device(tmp_path):
    """full_fp16/full_bf16 are options of the real sd-scripts (the shipped snapshot's schema)."""
    from kohya_wrap.spec.load import load_project

    cpu = {"installed": True, "version": "2.13.0+cpu", "cuda": None, "accelerator": "cpu", "devices": []}
    root = write_project(tmp_path / "a", 'mixed_precision = "no"\nfull_fp16 = true')
    loaded = load_project(root)
    (mismatch,) = preflight.precision_checks(loaded.settings, loaded.spec, cpu)
    assert mismatch.where == "training.full_fp16" and 'needs mixed_precision = "fp16" but it is "no"' in mismatch.what
    root = write_project(tmp_path / "b", 'mixed_precision = "fp16"\nfull_fp16 = true')
    loaded = load_project(root)
    (cpu_fp16,) = preflight.precision_checks(loaded.settings, loaded.spec, cpu)
    assert cpu_fp16.where == "training.mixed_precision" and cpu_fp16.fix.startswith(
        'set training.mixed_precision = "no" and remove full_fp16'
    )
    root = write_project(tmp_path / "c", 'mixed_precision = "bf16"\nfull_bf16 = true')
    loaded = load_project(root)
    assert preflight.precision_checks(loaded.settings, loaded.spec, cpu) == []  # the CPU trains in bf16
    (old_gpu,) = preflight.precision_checks(loaded.settings, loaded.spec, {**GPU_TORCH, "devices": [T4]})
    assert old_gpu.where == "training.mixed_precision" and "full_fp16 for full_bf16" in old_gpu.fix


# ---------------------------------------------------------------------------------------------- xformers, bitsandbytes


def test_xformers_and_an_8bit_optimizer_that_this_venv_lacks(on_standin, tmp_path, cli):
    """The real probe: this venv has neither xformers nor bitsandbytes."""
    root = write_project(tmp_path / "p", 'xformers = true\noptimizer_type = "AdamW8bit"')
    code, found = findings(cli, root)
    assert code == 2
    (xformers,) = at(found, "training.xformers")
    assert "xformers is not installed in sd-scripts' venv" in xformers["what"]
    assert xformers["fix"].startswith("set sdpa = true instead")
    (optimizer,) = at(found, "training.optimizer_type")
    assert '"AdamW8bit" needs bitsandbytes, which is not installed' in optimizer["what"]
    assert optimizer["fix"].startswith('set optimizer_type = "AdamW"')
    fixed = (
        "--set",
        "training.xformers=false",
        "--set",
        "training.sdpa=true",
        "--set",
        'training.optimizer_type="AdamW"',
    )
    assert cli("check", root, *fixed).code == 0


@pytest.mark.parametrize("optimizer", ["AdamW8bit", "Lion8bit", "PagedAdamW8bit", "PagedAdamW32bit", "PagedAdamW"])
def test_installed_but_broken_xformers_and_bitsandbytes(on_standin, tmp_path, cli, fake_probe, optimizer):
    root = write_project(tmp_path / "p", f'xformers = true\noptimizer_type = "{optimizer}"')
    calls = fake_probe(
        torch={**GPU_TORCH, "devices": [A100]},
        xformers={"installed": True, "version": "0.0.28", "device": "cuda", "ok": False,
                  "error": "NotImplementedError: No operator found for `memory_efficient_attention_forward`"},
        bitsandbytes={"installed": True, "version": "0.41.1", "device": "cuda", "ok": False,
                      "error": "RuntimeError: CUDA Setup failed despite GPU being available."},
    )  # fmt: skip
    code, found = findings(cli, root)
    assert code == 2 and calls == [["torch", "xformers", "bitsandbytes"]]
    assert (
        "xformers 0.0.28 cannot run its attention on this machine's cuda: NotImplementedError"
        in (at(found, "training.xformers")[0]["what"])
    )
    what = at(found, "training.optimizer_type")[0]["what"]
    assert f'"{optimizer}" needs bitsandbytes, and bitsandbytes 0.41.1 cannot run an 8-bit optimizer step' in what
    assert "CUDA Setup failed" in what


def test_only_what_the_spec_uses_is_probed_and_each_part_once(on_standin, tmp_path, cli, fake_probe):
    root = write_project(tmp_path / "p")
    calls = fake_probe(
        torch={**GPU_TORCH, "devices": [A100]},
        bitsandbytes={"installed": True, "version": "0.50.2", "device": "cuda", "ok": True},
    )
    assert cli("check", root).code == 0
    assert cli("check", root, "--set", 'training.optimizer_type="AdamW8bit"').code == 0
    assert cli("check", root, "--set", 'training.optimizer_type="AdamW8bit"').code == 0
    assert calls == [["torch"], ["bitsandbytes"]]


def test_the_8bit_optimizers_of_sd_scripts_get_optimizer():
    needs = [o for o in ("AdamW", "AdamW8bit", "SGDNesterov8bit", "Lion", "lion8bit", "PagedLion8bit", "PagedAdamW",
                         "PagedAdamW32bit", "AdEMAMix8bit", "Prodigy", "Adafactor", "bitsandbytes.optim.Adam8bit",
                         "DAdaptAdam", "", None) if preflight.needs_bitsandbytes(o)]  # fmt: skip
    assert needs == [
        "AdamW8bit",
        "SGDNesterov8bit",
        "lion8bit",
        "PagedLion8bit",
        "PagedAdamW",
        "PagedAdamW32bit",
        "AdEMAMix8bit",
        "bitsandbytes.optim.Adam8bit",
    ]


# ---------------------------------------------------------------------------------------------- the hub


@pytest.fixture
def tokenizing_standin(trainer, tmp_path, monkeypatch) -> Path:
    """The stand-in trainer with sd-scripts' strategy modules, which name the tokenizers it loads."""
    root = shutil.copytree(trainer, tmp_path / "sd-scripts")
    for name, text in STRATEGIES.items():
        (root / "library" / name).write_text(text, encoding="utf-8")
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", str(root))
    monkeypatch.setenv("KOHYA_WRAP_SD_PYTHON", sys.executable)
    return root


def sd_layout(folder: Path, files=CLIP_FILES) -> Path:
    """A tokenizer cache in sd-scripts' layout: DIR/<owner>_<repo>/ holding what save_pretrained writes."""
    target = folder / CLIP.replace("/", "_")
    target.mkdir(parents=True)
    for name in files:
        (target / name).write_text("{}", encoding="utf-8")
    return folder


def hub_cache(repo: str, files, subfolder: str = "") -> Path:
    """`files` of `repo` in the Hugging Face cache (HF_HOME/hub), as huggingface_hub lays them out."""
    import os

    snapshot = Path(os.environ["HF_HOME"]) / "hub" / f"models--{repo.replace('/', '--')}"
    (snapshot / "refs").mkdir(parents=True, exist_ok=True)
    (snapshot / "refs" / "main").write_text("0" * 40, encoding="utf-8")
    for name in files:
        path = snapshot / "snapshots" / ("0" * 40) / subfolder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}", encoding="utf-8")
    return snapshot


def test_an_offline_tokenizer_that_is_nowhere_is_an_error_until_tokenizer_cache_dir_holds_it(
    tokenizing_standin, tmp_path, cli
):
    root = write_project(tmp_path / "p")
    code, found = findings(cli, root)  # HF_HUB_OFFLINE=1 (conftest), an empty Hugging Face cache
    (error,) = at(found, "training.tokenizer_cache_dir")
    assert code == 2
    assert f"sd-scripts loads the tokenizer {CLIP} from the Hugging Face hub at start-up" in error["what"]
    assert "HF_HUB_OFFLINE is set" in error["what"]
    assert error["fix"].startswith('set training.tokenizer_cache_dir = "DIR" to a folder holding ')
    assert (
        f"`hf download {CLIP} vocab.json merges.txt tokenizer_config.json special_tokens_map.json --local-dir "
        in (error["fix"])
    )
    tokenizers = sd_layout(tmp_path / "tokenizers")
    setting = f'training.tokenizer_cache_dir="{tokenizers.as_posix()}"'
    code, found = findings(cli, root, "--set", setting)
    assert code == 0 and at(found, "training.tokenizer_cache_dir") == []


def test_a_tokenizer_cache_folder_that_lacks_files(tokenizing_standin, tmp_path, cli):
    root = write_project(tmp_path / "p")
    tokenizers = sd_layout(tmp_path / "tokenizers", files=("vocab.json", "tokenizer_config.json"))
    code, found = findings(cli, root, "--set", f'training.tokenizer_cache_dir="{tokenizers.as_posix()}"')
    (error,) = at(found, "training.tokenizer_cache_dir")
    assert code == 2 and "lacks merges.txt, special_tokens_map.json" in error["what"]


def test_a_tokenizer_in_the_hugging_face_cache(tokenizing_standin, tmp_path, cli, monkeypatch, fake_probe):
    root = write_project(tmp_path / "p")
    hub_cache(CLIP, CLIP_FILES)
    fake_probe(torch={**GPU_TORCH, "devices": [A100]})  # sd-scripts v0.10.1's transformers 4.54.1
    assert cli("check", root).code == 0  # offline: read from the cache
    # online but the hub unreachable: transformers 4.54 asks the hub before its cache and fails
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hubfiles, "resolves", lambda host, timeout=0.8: False)
    code, found = findings(cli, root)
    (error,) = at(found, "training.tokenizer_cache_dir")
    assert code == 2 and "huggingface.co cannot be resolved" in error["what"] and "transformers 4.54.1" in error["what"]
    assert error["fix"].startswith("export HF_HUB_OFFLINE=1 before `kohya-wrap run`")
    for file in preflight.probe_cache_dir().glob("*.json"):  # a venv with a transformers that reads the cache
        file.write_text(json.dumps({"torch": {**GPU_TORCH, "transformers": "4.57.1", "devices": [A100]}}))
    assert cli("check", root).code == 0


def test_an_uncached_tokenizer_with_the_hub_reachable_or_not(tokenizing_standin, tmp_path, cli, monkeypatch):
    root = write_project(tmp_path / "p")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    looked_up: list[str] = []

    def resolves(host, timeout=0.8):
        looked_up.append(host)
        return reachable

    monkeypatch.setattr(hubfiles, "resolves", resolves)
    reachable = True
    code, found = findings(cli, root)
    (info,) = at(found, "training.tokenizer_cache_dir", "info")
    assert code == 0 and f"sd-scripts downloads the tokenizer {CLIP} from huggingface.co at start-up" in info["what"]
    reachable = False
    code, found = findings(cli, root)
    (error,) = at(found, "training.tokenizer_cache_dir")
    assert code == 2 and "huggingface.co cannot be resolved (no network?)" in error["what"]
    assert looked_up == ["huggingface.co", "huggingface.co"]  # once per check
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example.com")
    findings(cli, root)
    assert looked_up[-1] == "hf-mirror.example.com"


def test_a_hub_base_model_that_cannot_be_downloaded(tokenizing_standin, tmp_path, cli, monkeypatch):
    root = write_project(tmp_path / "p", model="hf://someone/some-model")
    sd_layout(tmp_path / "tokenizers")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hubfiles, "resolves", lambda host, timeout=0.8: False)
    setting = ("--set", f'training.tokenizer_cache_dir="{(tmp_path / "tokenizers").as_posix()}"')
    code, found = findings(cli, root, *setting)
    (error,) = at(found, "model.base")
    assert code == 2 and "is not in the Hugging Face cache and huggingface.co cannot be resolved" in error["what"]
    assert error["fix"].startswith("run `hf download someone/some-model` where huggingface.co is reachable")
    hub_cache("someone/some-model", ["model_index.json"])
    assert cli("check", root, *setting).code == 0  # diffusers reads a cached repo without the network


@pytest.mark.parametrize(
    "family, repos",
    [
        ("sd15", [CLIP]),
        ("sd2", ["stabilityai/stable-diffusion-2"]),
        ("sdxl", [CLIP, "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"]),
        ("flux", [CLIP, "google/t5-v1_1-xxl"]),
    ],
)
def test_the_tokenizers_of_each_family(tmp_path, family, repos):
    root = tmp_path / "sd-scripts"
    (root / "library").mkdir(parents=True)
    for name, text in STRATEGIES.items():
        (root / "library" / name).write_text(text, encoding="utf-8")
    sd = SdScripts(root, Path(sys.executable))
    settings = SimpleNamespace(family=family, tokenizer_cache_dir=None)
    offline = hubfiles.Network(_answer=(False, "HF_HUB_OFFLINE is set"))
    found = hubfiles.tokenizer_checks(sd, settings, "4.54.1", offline)
    assert [f.severity for f in found] == ["error"] * len(repos)
    assert [f.what.split("tokenizer ")[1].split(" ")[0] for f in found] == repos
    if family == "sd2":  # from the tokenizer/ subfolder: into the Hugging Face cache
        assert "`hf download stabilityai/stable-diffusion-2 tokenizer/vocab.json tokenizer/merges.txt" in found[0].fix
        hub_cache(repos[0], CLIP_FILES, subfolder="tokenizer")
        assert hubfiles.tokenizer_checks(sd, settings, "4.54.1", offline) == []
    if family == "flux":  # T5TokenizerFast: spiece.model will do
        assert "google_t5-v1_1-xxl/ with spiece.model or tokenizer.json" in found[1].fix
        hub_cache(repos[1], ["spiece.model"])
        assert len(hubfiles.tokenizer_checks(sd, settings, "4.54.1", offline)) == 1


def test_an_sd_scripts_before_the_strategies_names_its_tokenizers_in_train_util(tmp_path):
    root = tmp_path / "sd-scripts"
    (root / "library").mkdir(parents=True)
    (root / "library" / "train_util.py").write_text(
        'TOKENIZER_PATH = "openai/clip-vit-large-patch14"\n'
        'V2_STABLE_DIFFUSION_PATH = "stabilityai/stable-diffusion-2"\n',
        encoding="utf-8",
    )
    assert hubfiles.tokenizer_repo(root, hubfiles.TOKENIZERS["sd15"][0]) == CLIP
    assert hubfiles.tokenizer_repo(root, hubfiles.TOKENIZERS["flux"][0]) is None


def test_without_an_installed_sd_scripts_the_environment_is_not_checked(project, cli):
    """The sd15-character preset trains in fp16; with no sd-scripts (the shipped snapshot) nothing is probed."""
    code, found = findings(cli, project())
    assert code == 0
    assert "not checked without an installed sd-scripts" in at(found, "environment", "info")[0]["what"]


# ---------------------------------------------------------------------------------------------- after launch


def recorded(name: str) -> tuple[str | None, list[str], list[str]]:
    """The exception line, error lines and traceback lines the run's parser reads from a recording."""
    parsers: dict[str, EventParser] = {}
    exception, errors, context = None, [], []
    for line in (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[1:]:
        record = json.loads(line)
        if "data" not in record:
            continue
        for event in parsers.setdefault(record["stream"], EventParser()).feed(record["data"]):
            if isinstance(event, TracebackLine):
                context.append(event.text)
                exception = exception or event.exception
            elif isinstance(event, LogMessage) and event.level in ("ERROR", "CRITICAL"):
                errors.append(event.message)
    return exception, errors, context


def test_the_recorded_hub_failures_name_the_repo_from_the_traceback(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    exception, errors, context = recorded("fail_tokenizer_no_network")
    assert exception.startswith("urllib3.exceptions.NameResolutionError")  # all the trial's user read
    what, fix = diagnose(exception, errors, "failed", context)
    assert what.startswith(f"sd-scripts tried to download {CLIP} (the CLIP tokenizer sd-scripts loads for SD 1.x")
    assert "from the Hugging Face hub (huggingface.co) and could not reach it" in what
    assert "training.tokenizer_cache_dir to a folder holding openai_clip-vit-large-patch14/" in fix
    exception, errors, context = recorded("fail_tokenizer_offline")
    assert exception == "TypeError: expected str, bytes or os.PathLike object, not NoneType"
    what, fix = diagnose(exception, errors, "failed", context)  # the traceback shows transformers' tokenizer
    assert "is not in the Hugging Face cache and HF_HUB_OFFLINE is set" in what and "tokenizer_cache_dir" in fix
    assert diagnose(exception, errors, "failed")[0].startswith("sd-scripts failed: TypeError")  # no clue: raw


@pytest.mark.parametrize(
    "exception, what, fix",
    [
        (
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
            "23.65 GiB of which 1.2 GiB is free.",
            "the GPU ran out of memory (it asked for 2.00 GiB of a 23.65 GiB GPU)",
            "gradient_checkpointing = true",
        ),
        (
            "RuntimeError: DefaultCPUAllocator: not enough memory: you tried to allocate 1073741824 bytes.",
            "the machine ran out of memory (RAM)",
            "train_batch_size = 1",
        ),
        (
            "RuntimeError: \"addmm_impl_cpu_\" not implemented for 'Half'",
            'mixed_precision = "fp16" fails like this on a machine without a CUDA device',
            'set training.mixed_precision = "no"',
        ),
        (
            "AssertionError: Torch not compiled with CUDA enabled",
            "its torch has none (a CPU build, or no NVIDIA driver or GPU)",
            'mixed_precision = "no", sdpa = true instead of xformers, optimizer_type = "AdamW"',
        ),
        ("ModuleNotFoundError: No module named 'cv2'", "lacks the Python module 'cv2'", "pip install opencv-python"),
        (
            "ModuleNotFoundError: No module named 'lycoris'",
            "lacks the Python module 'lycoris'",
            "check training.network_module (lycoris)",
        ),
        (
            "ImportError: No bitsandbytes / bitsandbytesがインストールされていないようです",
            "bitsandbytes (the 8-bit optimizers) could not load or run here",
            'set training.optimizer_type = "AdamW"',
        ),
        (
            "NotImplementedError: No operator found for `memory_efficient_attention_forward` with inputs:",
            "xformers could not run its attention here",
            "set training.sdpa = true instead of xformers",
        ),
        (
            "OSError: Can't load tokenizer for 'openai/clip-vit-large-patch14'. If you were trying to load it from "
            "'https://huggingface.co/models', make sure you don't have a local directory with the same name.",
            f"{CLIP} (the CLIP tokenizer sd-scripts loads for SD 1.x, SDXL and FLUX)",
            "training.tokenizer_cache_dir to a folder holding openai_clip-vit-large-patch14/",
        ),
        (
            "huggingface_hub.errors.OfflineModeIsEnabled: Cannot reach https://huggingface.co/api/models/"
            "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k/tree/main/additional_chat_templates: offline mode is enabled.",
            "sd-scripts needed laion/CLIP-ViT-bigG-14-laion2B-39B-b160k (SDXL's second tokenizer) from the Hugging "
            "Face hub; it is not in the Hugging Face cache and HF_HUB_OFFLINE is set",
            "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k/",
        ),
        (
            "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find the requested files in the disk cache and "
            "outgoing traffic has been disabled. To enable hf.co look-ups and downloads online, set "
            "'local_files_only' to False.",
            "it is not in the Hugging Face cache and HF_HUB_OFFLINE is set",
            "`kohya-wrap check` names each hub file a run needs",
        ),
        (
            "requests.exceptions.ConnectionError: (MaxRetryError(\"HTTPSConnectionPool(host='huggingface.co', "
            'port=443): Max retries exceeded with url: /stabilityai/sdxl-vae/resolve/main/config.json"))',
            "sd-scripts tried to download stabilityai/sdxl-vae from the Hugging Face hub (huggingface.co)",
            "`hf download stabilityai/sdxl-vae`",
        ),
    ],
)
def test_failures_after_launch_map_to_a_cause_and_a_fix(exception, what, fix):
    explained, advice = diagnose(exception, [], "failed")
    assert what in explained and explained.endswith(exception)
    assert advice.startswith("fix: ") and fix in advice
