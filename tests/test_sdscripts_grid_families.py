"""The commands `grid` builds for FLUX, SD3, Lumina, HunyuanImage and Anima, parsed by the real sd-scripts'
`<family>_minimal_inference.py` argument parsers (marker `sdscripts`): each script runs in sd-scripts' venv
with `argparse.ArgumentParser.parse_args` patched to print what it parsed and exit, so every flag kohya-wrap
emits must be one the script declares, with a value of its type, landing where kohya-wrap meant it. No model
loads: these models (FLUX's 12B transformer, SD3, Lumina 2, HunyuanImage 2.1, Anima) cannot be built or run on
this machine, so parsing is the check that can be made here; rendering itself is tested on stand-ins
(tests/test_grid_families.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from test_grid_families import NAME, family_project

pytestmark = pytest.mark.sdscripts

# runs inside sd-scripts' venv: the script as `python script.py ARGS` would run it, stopped at its parse_args
PARSE = r"""
import argparse, json, os, runpy, sys
script, args = sys.argv[1], sys.argv[2:]
original = argparse.ArgumentParser.parse_args

def parse_and_stop(self, args=None, namespace=None):
    parsed = original(self, args, namespace)
    print("PARSED " + json.dumps(vars(parsed), default=str), flush=True)
    os._exit(0)  # before any model loads

argparse.ArgumentParser.parse_args = parse_and_stop
sys.argv = [script, *args]
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
raise SystemExit("the script never parsed its arguments")
"""


def parsed_by_the_real_script(command: list[str], sd_root: Path) -> dict:
    python = os.environ["KOHYA_WRAP_SD_PYTHON"]
    result = subprocess.run(
        [python, "-c", PARSE, command[1], *command[2:]],
        capture_output=True,
        text=True,
        cwd=sd_root,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("PARSED ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("PARSED "))


# family → (the namespace's fields for: base model, [model/training] file → dest, prompt size dests, steps, cfg)
EXPECTED = {
    "flux": ("ckpt_path", {"clip_l": "clip_l", "t5xxl": "t5xxl", "ae": "ae"}, "steps", "cfg_scale"),
    "sd3": ("ckpt_path", {"clip_l": "clip_l", "t5xxl": "t5xxl", "clip_g": "clip_g"}, "steps", "cfg_scale"),
    "lumina": ("pretrained_model_name_or_path", {"gemma2": "gemma2_path", "ae": "ae_path"}, "steps", "guidance_scale"),
    "hunyuan_image": (
        "dit",
        {"vae": "vae", "text_encoder": "text_encoder", "byt5": "byt5"},
        "infer_steps",
        "guidance_scale",
    ),
    "anima": ("dit", {"vae": "vae", "qwen3": "text_encoder"}, "infer_steps", "guidance_scale"),
}


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_the_real_minimal_inference_script_parses_the_grid_command(family, tmp_path, real_sdscripts):
    from kohya_wrap.grid import Checkpoint, Prompt, _minimal_generator, renderer
    from kohya_wrap.grid.cells import Cell
    from kohya_wrap.sdscripts.families import family_named
    from kohya_wrap.spec.load import load_project

    inference = family_named(family).inference
    if not (real_sdscripts / inference.script).is_file():
        pytest.skip(f"this sd-scripts has no {inference.script}")
    root = family_project(tmp_path / f"{family} 项目", family, 'mixed_precision = "bf16"\n')
    loaded = load_project(root)
    generator, base = _minimal_generator(loaded, family_named(family), renderer(loaded))
    lora = root / "model" / f"{NAME}.safetensors"
    prompt = Prompt("-mytoken woman, portrait", "blurry, lowres")  # a leading "-" must not read as an option
    with_lora = Cell(Checkpoint(lora, "final", "0" * 64), 0.75, prompt, 42, 4.5, 12, "default", 832, 1216)
    base_only = Cell(None, 0.0, prompt, 7, 1.0, 20, "default", 512, 512)
    base_dest, files, steps, cfg = EXPECTED[family]

    got = parsed_by_the_real_script(generator.command(with_lora, lora, tmp_path / "out"), real_sdscripts)
    assert got[base_dest] == base == str(root / "files" / "base.safetensors")
    for name, dest in files.items():
        assert got[dest] == str(root / "files" / f"{name}.safetensors"), dest
    assert got["prompt"] == "-mytoken woman, portrait" and got["negative_prompt"] == "blurry, lowres"
    assert (got["seed"], got[steps], got[cfg]) == (42, 12, 4.5)
    if family in ("hunyuan_image", "anima"):
        assert got["image_size"] == [1216, 832] and got["save_path"] == str(tmp_path / "out")  # height first
        assert got["lora_weight"] == [str(lora)] and got["lora_multiplier"] == [0.75]
    else:
        width, height = ("image_width", "image_height") if family == "lumina" else ("width", "height")
        assert (got[width], got[height]) == (832, 1216) and got["output_dir"] == str(tmp_path / "out")
        assert got["lora_weights"] == [f"{lora};0.75"]
    precision = {"flux": ("dtype", "bfloat16"), "lumina": ("dtype", "bf16"), "sd3": ("bf16", True)}.get(family)
    if precision:
        assert got[precision[0]] == precision[1]

    plain = parsed_by_the_real_script(generator.command(base_only, None, tmp_path / "out"), real_sdscripts)
    assert plain.get("lora_weights", []) in ([], None) and plain.get("lora_weight") is None  # weight 0: no LoRA
    assert plain["seed"] == 7 and plain[steps] == 20
