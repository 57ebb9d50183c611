"""SDXL through the real sd-scripts (markers `sdscripts` and `slow`), on the tiny SDXL demo model (full-size
random UNet, small text encoders, tiny VAE; built once under KOHYA_WRAP_TEST_CACHE): `plan`'s step math
equals what sdxl_train_network.py prints on a bucketed dataset of mixed shapes, a `[sample]` prompt renders
during SDXL training, and `grid` renders checkpoints × weights with gen_img.py --sdxl. Each test loads the
5 GB UNet in bfloat16 (~6 GiB peak RSS): run them one at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from conftest import make_images
from kohya_wrap import demo as demo_module
from test_sdscripts_plan import assert_same, plan_json, sd_scripts_plan_block

pytestmark = [pytest.mark.sdscripts, pytest.mark.slow]


@pytest.fixture
def sdxl_model(real_sdscripts) -> tuple[Path, Path]:
    """The SDXL demo model and its tokenizer cache, built once into the test cache (reused after)."""
    python = os.environ.get("KOHYA_WRAP_SD_PYTHON") or str(real_sdscripts.parent / "venv" / "bin" / "python")
    sd = type("Sd", (), {"python": Path(python)})()
    return demo_module.ensure_demo_model(sd, lambda _: None, "sdxl")


# the demo's CPU settings: the UNet loaded in bfloat16, trained alone on cached text-encoder outputs
XL_TRAINING = """
[training]
mixed_precision = "bf16"
full_bf16 = true
network_train_unet_only = true
cache_text_encoder_outputs = true
cache_latents = true
network_dim = 4
sdpa = true
max_data_loader_n_workers = 0
tokenizer_cache_dir = "{tokenizers}"
"""


def test_sdxl_plan_on_mixed_buckets(tmp_path, sdxl_model, cli):
    """The 1024-class bucketing scaled down by 8 (128 px, buckets 64-256 in steps of 32, SDXL's multiple):
    landscape, portrait and square images, two concepts with repeats, batch 2 with accumulation: the
    steps `plan` promises are the ones sdxl_train_network.py prints before its first step."""
    model, tokenizers = sdxl_model
    root = tmp_path / "xl buckets"
    root.mkdir()
    spec = f"""name = "xl_buckets"
[model]
base = "{model.as_posix()}"
family = "sdxl"

[[concepts]]
token = "mytoken"
class = "woman"
repeats = 3

[[concepts]]
token = "mytoken"
class = "person"
repeats = 2

[dataset]
resolution = 128
enable_bucket = true
min_bucket_reso = 64
max_bucket_reso = 256
bucket_reso_steps = 32
bucket_no_upscale = false
"""
    training = XL_TRAINING.format(tokenizers=tokenizers.as_posix())
    training += "max_train_epochs = 3\ntrain_batch_size = 2\ngradient_accumulation_steps = 2\n"
    (root / "kohya-wrap.toml").write_text(spec + training, encoding="utf-8")
    # photos of 1024-class shapes, scaled down by 8: 1216×832, 832×1216, 1024², 1792×512, 768×1344, …
    make_images(root / "image" / "3_mytoken woman", [(152, 104), (104, 152), (128, 128), (224, 64), (96, 168)])
    make_images(root / "image" / "2_mytoken person", [(120, 160), (90, 160), (200, 150), (60, 200)])
    assert cli("check", root).code == 0
    plan = plan_json(cli, root)
    assert len(plan["buckets"]) > 3 and plan["train_images_x_repeats"] == 5 * 3 + 4 * 2
    assert any(a.endswith("sdxl_train_network.py") for a in plan["command"])
    assert_same(plan, sd_scripts_plan_block(plan["command"], timeout=600))


SAMPLE = """
[sample]
prompts = [
    "kwdemo shape, red",
    {text = "kwdemo shape, blue", width = 64, height = 96, seed = 7, steps = 2, sampler = "euler_a"},
]
steps = 2
seed = 5
every_n_steps = 2
"""


def test_sdxl_sample_renders_during_training(tmp_path, sdxl_model, cli):
    """A [sample] section on the SDXL demo (bf16 weights, cached text-encoder outputs, on the CPU): sd-scripts
    renders both prompts at step 2 at the sizes asked, and the record lists them."""
    root = tmp_path / "xl samples"
    demo_module.write_demo_project(root, *sdxl_model, steps=2, family="sdxl")
    spec = root / "kohya-wrap.toml"
    spec.write_text(spec.read_text(encoding="utf-8") + SAMPLE, encoding="utf-8")
    result = cli("run", root, "--plain")
    assert result.code == 0, result.out + result.err
    samples = sorted((root / "model" / "sample").glob("*.png"))
    assert len(samples) == 2, [p.name for p in samples]  # step 2, both prompts
    assert sorted(Image.open(p).size for p in samples) == [(64, 64), (64, 96)]
    run = max(p for p in (root / "runs").iterdir() if p.is_dir())
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["verdict"] == "trained"
    assert sorted(Path(p).name for p in manifest["sample_images"]) == [p.name for p in samples]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sum(e["event"] == "SampleSaved" for e in events) == 2


def test_sdxl_grid_checkpoints_by_weights(tmp_path, sdxl_model, cli):
    """`grid` on an SDXL run: gen_img.py --sdxl loads the diffusers-folder model once, renders the step-2
    and final checkpoints at weights 0 and 1, and the LoRA changes the pixels."""
    root = tmp_path / "xl grid"
    demo_module.write_demo_project(root, *sdxl_model, steps=4, family="sdxl")  # saves step 2 and final
    trained = cli("run", root, "--plain")
    assert trained.code == 0, trained.out + trained.err
    args = ["grid", root, "--checkpoints", "step 2,final", "--seeds", "1", "--prompts", "a red square"]
    result = cli(*args, "--steps", "2", "--weights", "0,1", "--json")
    assert result.code == 0, result.out + result.err
    data = json.loads(result.out)
    assert data["rendered"] == 3 and data["cached"] == 0 and data["failed"] == 0, data  # weight 0 once
    folder = Path(data["folder"])
    log = (folder / "gen.log").read_text(encoding="utf-8")
    assert "SDXL: True" in log and log.count("### ") == 1  # one gen_img.py process for the grid
    assert [log.count(f"network mul: {m}") for m in ("[0.0, 0.0]", "[1.0, 0.0]", "[0.0, 1.0]")] == [1, 1, 1]
    grid = json.loads((folder / "grid.json").read_text(encoding="utf-8"))
    cells = {c["checkpoint_label"]: Image.open(folder / c["image"]).convert("RGB") for c in grid["cells"]}
    assert set(cells) == {"base model", "step 2", "final"}
    assert all(image.size == (64, 64) for image in cells.values())
    assert ImageChops.difference(cells["final"], cells["base model"]).getbbox() is not None  # the LoRA acts
