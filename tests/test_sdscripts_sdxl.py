"""`kohya-wrap demo --family sdxl`: a tiny SDXL-shaped model (full-size random UNet, small text encoders
and VAE, a diffusers folder) trained by the real sdxl_train_network.py on the CPU (markers `sdscripts`
and `slow`); the demo's SDXL project and model cache with the stand-in (default suite); and the sharded
safetensors writer of sdscripts/tinymodel.py read back by safetensors itself (marker `sdscripts`)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kohya_wrap import demo as demo_module
from kohya_wrap.sdscripts.tinymodel import MARKERS, TOKENIZER_CACHE_NAMES

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sdscripts_logs"
TINYMODEL = Path(demo_module.__file__).resolve().parent / "sdscripts" / "tinymodel.py"
BIGG = "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"


def safetensors_header(path: Path) -> dict:
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size))


def test_sdxl_demo_needs_both_hub_tokenizers():
    """sdxl_train_network.py loads CLIP-L's and OpenCLIP bigG's tokenizers from the hub unless both are in
    the tokenizer cache: the SDXL demo model needs both entries, SD1.5's only the first."""
    assert TOKENIZER_CACHE_NAMES["sd15"] == ("openai_clip-vit-large-patch14",)
    assert TOKENIZER_CACHE_NAMES["sdxl"] == ("openai_clip-vit-large-patch14", BIGG)
    assert demo_module.FAMILIES == ("sd15", "sdxl") and set(MARKERS) == {"sd15", "sdxl"}


def test_sdxl_demo_model_is_rebuilt_until_the_bigg_tokenizer_is_cached(tmp_path, monkeypatch):
    """A cached SDXL model whose tokenizer cache lacks bigG's entry (e.g. made by the SD1.5 demo alone) is
    handed to tinymodel.py again, with --family sdxl; with both entries it is reused without a process."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model, tokenizers = demo_module.demo_model_dirs("sdxl")
    assert model.name == "tiny-sdxl" and demo_module.demo_model_dirs("sd15") == (model.parent / "tiny-sd15", tokenizers)
    model.mkdir(parents=True)
    (model / MARKERS["sdxl"]).write_text("{}", encoding="utf-8")
    (tokenizers / "openai_clip-vit-large-patch14").mkdir(parents=True)
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        (tokenizers / BIGG).mkdir()
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(demo_module, "run", fake_run)
    sd = type("Sd", (), {"python": Path(sys.executable)})()
    said = []
    assert demo_module.ensure_demo_model(sd, said.append, "sdxl") == (model, tokenizers)
    assert len(calls) == 1 and calls[0][-2:] == ["--family", "sdxl"] and "SDXL demo model" in said[0]
    assert demo_module.ensure_demo_model(sd, said.append, "sdxl") == (model, tokenizers)
    assert len(calls) == 1 and said[-1].endswith("(cached)")


SDXL_OPTIONS = """\
    parser.add_argument("--full_bf16", action="store_true")
    parser.add_argument("--network_train_unet_only", action="store_true")
    parser.add_argument("--cache_text_encoder_outputs", action="store_true")
    return parser
"""


@pytest.fixture
def on_sdxl_standin(trainer, tmp_path, monkeypatch) -> Path:
    """The stand-in trainer with an sdxl_train_network.py: its replay, with the SDXL options the demo sets."""
    root = tmp_path / "sd-scripts"
    shutil.copytree(trainer, root)
    script = (root / "train_network.py").read_text(encoding="utf-8")
    (root / "sdxl_train_network.py").write_text(script.replace("    return parser\n", SDXL_OPTIONS, 1), "utf-8")
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", str(root))
    monkeypatch.setenv("KOHYA_WRAP_SD_PYTHON", sys.executable)
    return root


def test_demo_family_sdxl_renders_an_sdxl_run(on_sdxl_standin, monkeypatch, tmp_path, cli):
    """`demo --family sdxl` writes family = "sdxl" and the settings that fit a CPU (bf16 weights, cached
    text-encoder outputs, U-Net only) and trains it with sdxl_train_network.py (here the stand-in)."""
    monkeypatch.setenv("KOHYA_WRAP_REPLAY", str(FIXTURES / "pipe_steps.jsonl"))
    monkeypatch.setenv("KOHYA_WRAP_REPLAY_SPEED", "50")
    model, tokenizers = tmp_path / "model", tmp_path / "tokenizers"
    model.mkdir()
    (model / "model_index.json").write_text("{}", encoding="utf-8")
    tokenizers.mkdir()
    root = tmp_path / "demo xl"
    args = ("--plain", "--steps", "6", "--model", model, "--tokenizers", tokenizers, "--family", "sdxl")
    result = cli("demo", root, *args)
    assert result.code == 0, result.out + result.err
    assert 'family = "sdxl"' in (root / "kohya-wrap.toml").read_text(encoding="utf-8")
    run = next(p for p in (root / "runs").iterdir() if p.is_dir())
    argv = json.loads((run / "command.json").read_text(encoding="utf-8"))["argv"]
    assert any(a.endswith("sdxl_train_network.py") for a in argv)
    train = (run / "train.toml").read_text(encoding="utf-8")
    for line in (
        'mixed_precision = "bf16"',
        "full_bf16 = true",
        "network_train_unet_only = true",
        "cache_text_encoder_outputs = true",
        "cache_latents = true",
    ):
        assert line in train
    assert "gradient_checkpointing" not in train  # 4x slower a step at 64 px, and no memory saved
    assert cli("check", root).code == 0
    assert cli("demo", tmp_path / "bad", "--family", "sd3").code == 2


@pytest.mark.sdscripts
def test_sharded_safetensors_writer_reads_back(tmp_path, real_sdscripts):
    """tinymodel.py writes the SDXL UNet's safetensors shards itself (one tensor in memory at a time):
    safetensors reads every shard back with the names, shapes, fp16 and values, and the index maps them."""
    import os

    code = f"""
import sys, json, torch
sys.path.insert(0, {str(TINYMODEL.parent)!r})
from tinymodel import write_sharded_safetensors
from safetensors.torch import load_file
from pathlib import Path
shapes = {{"a.weight": (3, 4), "a.bias": (3,), "b.weight": (5, 2, 3, 3), "n.weight": (7,)}}
made = {{}}
def make(name, shape):
    made[name] = torch.randn(shape).to(torch.float16)
    return made[name]
folder = Path({str(tmp_path)!r})
total = write_sharded_safetensors(folder, "m", shapes, make, shard_bytes=100)
index = json.loads((folder / "m.safetensors.index.json").read_text())
assert index["metadata"]["total_size"] == total == 2 * (12 + 3 + 90 + 7), total
loaded = {{}}
for shard in sorted(set(index["weight_map"].values())):
    loaded.update(load_file(folder / shard))
assert sorted(loaded) == sorted(shapes) and len(set(index["weight_map"].values())) == 3
for name, tensor in loaded.items():
    assert tensor.dtype == torch.float16 and tuple(tensor.shape) == shapes[name] and torch.equal(tensor, made[name])
print("ok")
"""
    python = os.environ.get("KOHYA_WRAP_SD_PYTHON") or str(real_sdscripts.parent / "venv" / "bin" / "python")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.sdscripts
@pytest.mark.slow
def test_real_sdxl_demo(tmp_path, real_sdscripts, cli):
    """The SDXL demo model is built once (under KOHYA_WRAP_TEST_CACHE) and trained 4 steps by the real
    sdxl_train_network.py: the record says trained, and the LoRA is an SDXL U-Net LoRA (sd-scripts' own
    SDXL module names and base-model metadata, no text-encoder modules)."""
    result = cli("demo", tmp_path / "demo", "--plain", "--steps", "4", "--family", "sdxl")
    assert result.code == 0, result.out + result.err
    assert "step 4/4" in result.out and "model saved" in result.out
    root = tmp_path / "demo"
    run = next(p for p in (root / "runs").iterdir() if p.is_dir())
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["verdict"] == "trained" and manifest["steps"] == {"planned": 4, "reached": 4}
    argv = json.loads((run / "command.json").read_text(encoding="utf-8"))["argv"]
    assert any(a.endswith("sdxl_train_network.py") for a in argv)
    lora = root / "model" / "kwdemo.safetensors"
    header = safetensors_header(lora)
    assert header["__metadata__"]["ss_base_model_version"] == "sdxl_base_v1-0"
    modules = {key.split(".")[0] for key in header if key != "__metadata__"}
    assert len(modules) == 722 and all(m.startswith("lora_unet_") for m in modules)  # SDXL's attention layers
    assert "lora_unet_middle_block_1_transformer_blocks_9_attn2_to_k" in modules  # 10 blocks deep: SDXL's
    assert "trained" in cli("runs", root).out
    model = Path(result.out.split("demo model: ")[1].split()[0])
    assert (model / MARKERS["sdxl"]).is_file() and len(list((model / "unet").glob("*.safetensors"))) == 10
