"""`kohya-wrap grid` for the families sd-scripts renders with a `<family>_minimal_inference.py` (FLUX, SD3,
Lumina, HunyuanImage, and Anima, which kohya-wrap infers from its name): one process per cell, the LoRA at the
cell's weight, no sampler axis. The sd-scripts here is the stand-in trainer plus stand-in training scripts and
minimal-inference scripts that parse their arguments with argparse exactly as the real ones do (the same
names, types, nargs and required flags; tests/test_sdscripts_grid_families.py parses what kohya-wrap builds
with the real parsers) and paint each image a colour computed from the prompt, seed, steps, cfg, size, and the
LoRAs' bytes and multipliers."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from kohya_wrap.grid.pages import axis_label
from standin import SUBSCRIPT

NAME = "mytoken_v1"

# the model files each family's spec names: [model] fields, then [training] keys of its script
FILES = {
    "flux": (("clip_l", "t5xxl", "ae"), ()),
    "sd3": (("clip_l", "t5xxl"), ("clip_g",)),
    "lumina": (("ae",), ("gemma2",)),
    "hunyuan_image": (("vae",), ("text_encoder", "byt5")),
    "anima": (("vae",), ("qwen3",)),  # not in kohya-wrap's family table: inferred from anima_train_network.py
}

PAINT = '''
import datetime, hashlib, json, os, sys, time
from PIL import Image


def paint(args, prompt, negative, seed, steps, cfg, width, height, loras, folder, name, files):
    """What the real script would render, as one flat colour; "crash" in the prompt fails like a bad load."""
    log = os.environ.get("KOHYA_WRAP_STANDIN_GEN_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"argv": sys.argv[1:], "loras": loras}) + "\\n")
    print(f"generating: {prompt}", flush=True)
    time.sleep(float(os.environ.get("KOHYA_WRAP_STANDIN_GEN_DELAY", "0")))  # for a test to press Ctrl-C
    if "crash" in prompt:
        print("RuntimeError: stand-in generation failed on purpose", flush=True)
        sys.exit(1)
    for path in files:  # each model file loads
        if open(path, "rb").read() == b"broken":
            print(f"safetensors_rust.SafetensorError: Error while deserializing header: {path}", flush=True)
            sys.exit(1)
    shas = [(hashlib.sha256(open(path, "rb").read()).hexdigest(), float(m)) for path, m in loras if float(m) != 0]
    basis = json.dumps([prompt, negative, seed, steps, cfg, width, height, shas])
    digest = hashlib.sha256(basis.encode()).digest()
    os.makedirs(folder, exist_ok=True)
    Image.new("RGB", (width, height), tuple(digest[:3])).save(os.path.join(folder, name))
'''

# the argument lists below are sd-scripts v0.10.1's (help texts left out)
FLUX = (
    PAINT
    + """
if __name__ == "__main__":
    import argparse
    target_height = 768
    target_width = 1360
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt_path", type=str, required=True)
    parser.add_argument("--model_type", type=str, choices=["flux", "chroma"], default="flux")
    parser.add_argument("--clip_l", type=str, required=False)
    parser.add_argument("--t5xxl", type=str, required=False)
    parser.add_argument("--ae", type=str, required=False)
    parser.add_argument("--apply_t5_attn_mask", action="store_true")
    parser.add_argument("--prompt", type=str, default="A photo of a cat")
    parser.add_argument("--output_dir", type=str, default=".")
    parser.add_argument("--dtype", type=str, default="bfloat16")
    parser.add_argument("--clip_l_dtype", type=str, default=None)
    parser.add_argument("--ae_dtype", type=str, default=None)
    parser.add_argument("--t5xxl_dtype", type=str, default=None)
    parser.add_argument("--flux_dtype", type=str, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=3.5)
    parser.add_argument("--negative_prompt", type=str, default=None)
    parser.add_argument("--cfg_scale", type=float, default=1.0)
    parser.add_argument("--offload", action="store_true")
    parser.add_argument("--lora_weights", type=str, nargs="*", default=[])
    parser.add_argument("--merge_lora_weights", action="store_true")
    parser.add_argument("--width", type=int, default=target_width)
    parser.add_argument("--height", type=int, default=target_height)
    parser.add_argument("--interactive", action="store_true")
    args = parser.parse_args()
    loras = []
    for weights_file in args.lora_weights:
        if ";" in weights_file:
            weights_file, multiplier = weights_file.split(";")
            multiplier = float(multiplier)
        else:
            multiplier = 1.0
        loras.append((weights_file, multiplier))
    paint(args, args.prompt, args.negative_prompt, args.seed, args.steps, args.cfg_scale, args.width, args.height,
          loras, args.output_dir, f"{datetime.datetime.now().strftime('%Y%m%d_%H%M%S')}.png",
          [args.ckpt_path, args.clip_l, args.t5xxl, args.ae])
"""
)

SD3 = (
    PAINT
    + """
if __name__ == "__main__":
    import argparse
    target_height = 1024
    target_width = 1024
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt_path", type=str, required=True)
    parser.add_argument("--clip_g", type=str, required=False)
    parser.add_argument("--clip_l", type=str, required=False)
    parser.add_argument("--t5xxl", type=str, required=False)
    parser.add_argument("--t5xxl_token_length", type=int, default=256)
    parser.add_argument("--apply_lg_attn_mask", action="store_true")
    parser.add_argument("--apply_t5_attn_mask", action="store_true")
    parser.add_argument("--prompt", type=str, default="A photo of a cat")
    parser.add_argument("--negative_prompt", type=str, default="")
    parser.add_argument("--cfg_scale", type=float, default=5.0)
    parser.add_argument("--offload", action="store_true")
    parser.add_argument("--output_dir", type=str, default=".")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--lora_weights", type=str, nargs="*", default=[])
    parser.add_argument("--merge_lora_weights", action="store_true")
    parser.add_argument("--width", type=int, default=target_width)
    parser.add_argument("--height", type=int, default=target_height)
    parser.add_argument("--interactive", action="store_true")
    args = parser.parse_args()
    loras = []
    for weights_file in args.lora_weights:
        if ";" in weights_file:
            weights_file, multiplier = weights_file.split(";")
            multiplier = float(multiplier)
        else:
            multiplier = 1.0
        loras.append((weights_file, multiplier))
    paint(args, args.prompt, args.negative_prompt, args.seed, args.steps, args.cfg_scale, args.width, args.height,
          loras, args.output_dir, f"{datetime.datetime.now().strftime('%Y%m%d_%H%M%S')}.png",
          [p for p in (args.ckpt_path, args.clip_g, args.clip_l, args.t5xxl) if p])
"""
)

LUMINA = (
    PAINT
    + """
import argparse


def setup_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pretrained_model_name_or_path", type=str, default=None, required=True)
    parser.add_argument("--gemma2_path", type=str, default=None, required=True)
    parser.add_argument("--ae_path", type=str, default=None, required=True)
    parser.add_argument("--prompt", type=str, default="A beautiful sunset over the mountains")
    parser.add_argument("--negative_prompt", type=str, default="")
    parser.add_argument("--output_dir", type=str, default="outputs")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--steps", type=int, default=36)
    parser.add_argument("--guidance_scale", type=float, default=3.5)
    parser.add_argument("--image_width", type=int, default=1024)
    parser.add_argument("--image_height", type=int, default=1024)
    parser.add_argument("--dtype", type=str, default="bf16")
    parser.add_argument("--gemma2_dtype", type=str, default="bf16")
    parser.add_argument("--ae_dtype", type=str, default="bf16")
    parser.add_argument("--device", type=str, default=None)
    parser.add_argument("--offload", action="store_true")
    parser.add_argument("--system_prompt", type=str, default="")
    parser.add_argument("--add_system_prompt_to_negative_prompt", action="store_true")
    parser.add_argument("--gemma2_max_token_length", type=int, default=256)
    parser.add_argument("--discrete_flow_shift", type=float, default=6.0)
    parser.add_argument("--cfg_trunc_ratio", type=float, default=0.25)
    parser.add_argument("--renorm_cfg", type=float, default=1.0)
    parser.add_argument("--use_flash_attn", action="store_true")
    parser.add_argument("--use_sage_attn", action="store_true")
    parser.add_argument("--lora_weights", type=str, nargs="*", default=[])
    parser.add_argument("--merge_lora_weights", action="store_true")
    parser.add_argument("--interactive", action="store_true")
    return parser


if __name__ == "__main__":
    args = setup_parser().parse_args()
    loras = []
    for weights_file in args.lora_weights:
        if ";" in weights_file:
            weights_file, multiplier = weights_file.split(";")
            multiplier = float(multiplier)
        else:
            multiplier = 1.0
        loras.append((weights_file, multiplier))
    ts_str = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    paint(args, args.prompt, args.negative_prompt, args.seed, args.steps, args.guidance_scale, args.image_width,
          args.image_height, loras, args.output_dir, f"image_{ts_str}_{args.seed}.png",
          [args.pretrained_model_name_or_path, args.gemma2_path, args.ae_path])
"""
)

# hunyuan_image_minimal_inference.py; anima_minimal_inference.py has the same arguments less --byt5 and the
# APG ones
MUSUBI = (
    PAINT
    + """
import argparse


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="HunyuanImage inference script")
    parser.add_argument("--dit", type=str, default=None)
    parser.add_argument("--vae", type=str, default=None)
    parser.add_argument("--text_encoder", type=str, required=True)
{byt5}
    parser.add_argument("--lora_weight", type=str, nargs="*", required=False, default=None)
    parser.add_argument("--lora_multiplier", type=float, nargs="*", default=1.0)
    parser.add_argument("--include_patterns", type=str, nargs="*", default=None)
    parser.add_argument("--exclude_patterns", type=str, nargs="*", default=None)
    parser.add_argument("--guidance_scale", type=float, default=3.5)
    parser.add_argument("--prompt", type=str, default=None)
    parser.add_argument("--negative_prompt", type=str, default="")
    parser.add_argument("--image_size", type=int, nargs=2, default=[2048, 2048])
    parser.add_argument("--infer_steps", type=int, default=50)
    parser.add_argument("--save_path", type=str, required=True)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--flow_shift", type=float, default=5.0)
    parser.add_argument("--fp8", action="store_true")
    parser.add_argument("--fp8_scaled", action="store_true")
    parser.add_argument("--text_encoder_cpu", action="store_true")
    parser.add_argument("--device", type=str, default=None)
    parser.add_argument(
        "--attn_mode", type=str, default="torch", choices=["flash", "torch", "sageattn", "xformers", "sdpa"]
    )
    parser.add_argument("--output_type", type=str, default="images", choices=["images", "latent", "latent_images"])
    parser.add_argument("--no_metadata", action="store_true")
    parser.add_argument("--latent_path", type=str, nargs="*", default=None)
    parser.add_argument("--lycoris", action="store_true")
    parser.add_argument("--from_file", type=str, default=None)
    parser.add_argument("--interactive", action="store_true")
    args = parser.parse_args()
    if args.prompt is None and not args.from_file and not args.interactive:
        raise ValueError("Either --prompt, --from_file or --interactive must be specified")
    return args


if __name__ == "__main__":
    args = parse_args()
    multipliers = args.lora_multiplier if isinstance(args.lora_multiplier, list) else [args.lora_multiplier]
    loras = [(path, multipliers[i] if i < len(multipliers) else 1.0) for i, path in enumerate(args.lora_weight or [])]
    height, width = args.image_size
    time_flag = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    paint(args, args.prompt, args.negative_prompt, args.seed, args.infer_steps, args.guidance_scale, width, height,
          loras, args.save_path, f"{time_flag}_{args.seed}.png",
          [p for p in (args.dit, args.vae, args.text_encoder) if p])
"""
)

MINIMAL = {
    "flux": FLUX,
    "sd3": SD3,
    "lumina": LUMINA,
    "hunyuan_image": MUSUBI.replace("{byt5}", '    parser.add_argument("--byt5", type=str, default=None)'),
    "anima": MUSUBI.replace("{byt5}", ""),
}


@pytest.fixture
def sd_root(trainer, tmp_path, monkeypatch) -> Path:
    """The stand-in sd-scripts with every family's training script and minimal-inference script."""
    root = tmp_path / "sd-scripts"
    shutil.copytree(trainer, root)
    for family, (model, training) in FILES.items():
        extra = "".join(
            f'    parser.add_argument("--{name}", type=str, default=None)\n' for name in (*model, *training)
        )
        (root / f"{family}_train_network.py").write_text(SUBSCRIPT.format(extra=extra), encoding="utf-8")
        (root / f"{family}_minimal_inference.py").write_text(MINIMAL[family], encoding="utf-8")
    monkeypatch.setenv("KOHYA_WRAP_SD_SCRIPTS", str(root))
    monkeypatch.setenv("KOHYA_WRAP_SD_PYTHON", sys.executable)
    monkeypatch.setenv("KOHYA_WRAP_STANDIN_GEN_LOG", str(tmp_path / "gen.log"))
    return root


def family_project(root: Path, family: str, training: str = "") -> Path:
    """A `family` project with three saved checkpoints and every model file its spec names."""
    (root / "model").mkdir(parents=True)
    for stem, content in (
        (f"{NAME}-step00000002", b"lora at step 2"),
        (f"{NAME}-step00000004", b"lora at step 4"),
        (NAME, b"final lora"),
    ):
        (root / "model" / f"{stem}.safetensors").write_bytes(content)
    model, training_files = FILES[family]
    for name in ("base", *model, *training_files):
        (root / "files" / f"{name}.safetensors").parent.mkdir(exist_ok=True)
        (root / "files" / f"{name}.safetensors").write_bytes(f"the {name} model".encode())
    lines = "".join(f'{name} = "{(root / "files" / f"{name}.safetensors").as_posix()}"\n' for name in ("base", *model))
    training += "".join(f'{name} = "files/{name}.safetensors"\n' for name in training_files)  # relative
    (root / "kohya-wrap.toml").write_text(
        f'name = "{NAME}"\n[model]\nfamily = "{family}"\n{lines}'
        '[[concepts]]\ntoken = "mytoken"\nclass = "woman"\nrepeats = 10\n'
        f"[dataset]\nresolution = 64\n[training]\nmax_train_epochs = 1\n{training}"
        '[sample]\nprompts = ["mytoken woman, portrait"]\nnegative = "blurry"\nsteps = 8\ncfg = 6\nseed = 3\n',
        encoding="utf-8",
    )
    return root


def calls(root: Path) -> list[dict]:
    log = root.parent / "gen.log"
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []


def value(argv: list[str], flag: str, count: int = 1):
    """The value(s) after `flag` in an argv, or None; a `--flag=value` one too."""
    for index, arg in enumerate(argv):
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
        if arg == flag:
            found = argv[index + 1 : index + 1 + count]
            return found[0] if count == 1 else found
    return None


def test_a_flux_grid_renders_every_cell_one_process_each(sd_root, tmp_path, cli):
    root = family_project(tmp_path / "flux 项目", "flux", 'mixed_precision = "bf16"\n')
    args = ("--checkpoints", "step 2,step 4", "--weights", "0,1", "--seeds", "1,2", "--json")
    result = cli("grid", root, *args)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    # 2 checkpoints × 2 weights × 2 seeds; weight 0 is one base-model image for both checkpoints
    assert data["cells"] == 6 and data["rendered"] == 6 and data["failed"] == 0
    assert data["axes"] == {"x": "weight", "y": "checkpoint", "pages": ["seed"]}
    runs = calls(root)
    assert len(runs) == 6  # one process per cell
    files = root / "files"
    for run in runs:
        argv = run["argv"]
        assert value(argv, "--ckpt_path") == str(files / "base.safetensors")
        assert [value(argv, f"--{n}") for n in ("clip_l", "t5xxl", "ae")] == [
            str(files / f"{n}.safetensors") for n in ("clip_l", "t5xxl", "ae")
        ]
        assert value(argv, "--prompt") == "mytoken woman, portrait" and value(argv, "--negative_prompt") == "blurry"
        assert value(argv, "--steps") == "8" and value(argv, "--cfg_scale") == "6" and value(argv, "--seed") in "12"
        assert (value(argv, "--width"), value(argv, "--height")) == ("64", "64")
        assert value(argv, "--dtype") == "bfloat16"  # the precision the LoRA trained in
        assert "--sampler" not in argv
    weights = sorted(tuple(m for _, m in run["loras"]) for run in runs)
    assert weights == [()] * 2 + [(1.0,)] * 4  # weight 0: no LoRA argument at all
    assert {Path(path).name for run in runs for path, _ in run["loras"]} == {
        f"{NAME}-step00000002.safetensors",
        f"{NAME}-step00000004.safetensors",
    }

    folder = Path(data["folder"])
    grid = json.loads((folder / "grid.json").read_text(encoding="utf-8"))
    assert grid["renderer"] == "flux_minimal_inference.py"
    assert {c["sampler"] for c in grid["cells"]} == {"default"}  # the script's own; there is no choice
    assert axis_label("sampler", "default") == "the script's own sampler"  # as the page titles say it
    colours = {
        (c["checkpoint_label"], c["weight"], c["seed"]): Image.open(folder / c["image"]).getpixel((3, 3))
        for c in grid["cells"]
    }
    assert len(set(colours.values())) == 6  # every cell its own image: LoRA, weight and seed each tell
    assert (folder / "grid-seed-1.png").is_file() and "### " in (folder / "gen.log").read_text(encoding="utf-8")
    assert not (folder / ".work").exists()

    again = cli("grid", root, *args)  # all from the cache: no process at all
    assert again.code == 0 and json.loads(again.out)["cached"] == 6 and len(calls(root)) == 6


def test_a_hunyuan_image_grid_takes_its_own_argument_names(sd_root, tmp_path, cli):
    root = family_project(tmp_path / "hy", "hunyuan_image")
    result = cli("grid", root, "--checkpoints", "last", "--weights", "0.5", "--size", "64x96")
    assert result.code == 0, result.err
    assert "grid: 1 cell(s) at 64×96: 1 to render (hunyuan_image_minimal_inference.py loads the models" in result.out
    (run,) = calls(root)
    argv, files = run["argv"], root / "files"
    assert value(argv, "--dit") == str(files / "base.safetensors") and value(argv, "--vae") == str(
        files / "vae.safetensors"
    )
    assert value(argv, "--text_encoder") == str(files / "text_encoder.safetensors")  # relative in the spec
    assert value(argv, "--byt5") == str(files / "byt5.safetensors")
    assert value(argv, "--image_size", 2) == ["96", "64"]  # height first
    assert value(argv, "--infer_steps") == "8" and value(argv, "--guidance_scale") == "6"
    assert value(argv, "--lora_weight") == str(root / "model" / f"{NAME}.safetensors")
    assert value(argv, "--lora_multiplier") == "0.5"
    folder = Path(result.out.strip().splitlines()[-1].split(": ", 1)[1])
    (cell,) = json.loads((folder / "grid.json").read_text(encoding="utf-8"))["cells"]
    assert cell["status"] == "ok" and Image.open(folder / cell["image"]).size == (64, 96)


@pytest.mark.parametrize("family", ["sd3", "lumina", "anima"])
def test_sd3_lumina_and_inferred_anima_render(family, sd_root, tmp_path, cli):
    root = family_project(tmp_path / family, family, 'mixed_precision = "fp16"\n')
    result = cli("grid", root, "--checkpoints", "last", "--weights", "0,1", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["rendered"] == 2
    runs = calls(root)
    assert len(runs) == 2 and sorted(len(run["loras"]) for run in runs) == [0, 1]
    argv, files = runs[0]["argv"], root / "files"
    if family == "sd3":
        assert value(argv, "--clip_g") == str(files / "clip_g.safetensors") and "--fp16" in argv
    elif family == "lumina":
        assert value(argv, "--gemma2_path") == str(files / "gemma2.safetensors")
        assert value(argv, "--ae_path") == str(files / "ae.safetensors") and value(argv, "--dtype") == "fp16"
        assert value(argv, "--guidance_scale") == "6" and value(argv, "--image_width") == "64"
    else:  # an inferred family: HunyuanImage's argument names, its text encoder from training.qwen3
        assert value(argv, "--text_encoder") == str(files / "qwen3.safetensors") and "--byt5" not in argv


def test_a_crashing_cell_is_isolated(sd_root, tmp_path, cli):
    root = family_project(tmp_path / "flux", "flux")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first prompt\nthis one will crash\nthird prompt\n", encoding="utf-8")
    result = cli("grid", root, "--checkpoints", "last", "--prompts", prompts, "--json")
    assert result.code == 1, result.err
    data = json.loads(result.out)
    assert data["rendered"] == 2 and data["failed"] == 1 and len(calls(root)) == 3
    grid = json.loads((Path(data["folder"]) / "grid.json").read_text(encoding="utf-8"))
    (failed,) = [c for c in grid["cells"] if c["status"] == "failed"]
    assert failed["prompt"] == "this one will crash"
    assert failed["error"] == (
        "flux_minimal_inference.py exited with 1: RuntimeError: stand-in generation failed on purpose"
    )
    assert {c["prompt"] for c in grid["cells"] if c["status"] == "ok"} == {"first prompt", "third prompt"}


def test_when_the_first_two_cells_fail_the_rest_are_not_started(sd_root, tmp_path, cli):
    """A model file that does not load fails every cell alike: two failures and nothing rendered, and the
    other cells are marked failed with that reason instead of loading the models once each."""
    root = family_project(tmp_path / "flux", "flux")
    (root / "files" / "ae.safetensors").write_bytes(b"broken")
    result = cli("grid", root, "--checkpoints", "last", "--seeds", "1,2,3,4", "--json")
    assert result.code == 1 and json.loads(result.out)["failed"] == 4
    assert len(calls(root)) == 2
    grid = json.loads((Path(json.loads(result.out)["folder"]) / "grid.json").read_text(encoding="utf-8"))
    assert {c["error"] for c in grid["cells"]} == {
        "flux_minimal_inference.py exited with 1: safetensors_rust.SafetensorError: Error while deserializing "
        f"header: {root / 'files' / 'ae.safetensors'}"
    }


def test_a_sampler_axis_is_refused_and_the_batch_size_too(sd_root, tmp_path, cli):
    root = family_project(tmp_path / "flux", "flux")
    result = cli("grid", root, "--sampler", "euler_a,ddim")
    assert result.code == 2 and calls(root) == []
    assert "--sampler: flux_minimal_inference.py has no sampler choice" in result.err and "drop --sampler" in result.err
    batch = cli("grid", root, "--batch-size", "4")
    assert batch.code == 2 and "flux_minimal_inference.py renders one image per process" in batch.err


def test_a_lora_path_with_a_semicolon_still_loads(sd_root, tmp_path, cli):
    """flux/sd3/lumina read --lora_weights as "path;multiplier" split on ";": a project folder with one in
    its name would crash them, so the LoRA is linked under a plain name."""
    root = family_project(tmp_path / "a;b", "flux")
    result = cli("grid", root, "--checkpoints", "last", "--json")
    assert result.code == 0, result.err
    (run,) = calls(root)
    (path, weight) = run["loras"][0]
    assert ";" not in path and weight == 1.0
    assert json.loads(result.out)["rendered"] == 1


def test_an_inferred_family_whose_script_takes_other_arguments_is_refused(sd_root, tmp_path, cli):
    root = family_project(tmp_path / "anima", "anima")
    (sd_root / "anima_minimal_inference.py").write_text(SD3, encoding="utf-8")  # no --dit
    result = cli("grid", root)
    assert result.code == 2 and "Traceback" not in result.err
    assert "grid: anima_minimal_inference.py does not take the arguments kohya-wrap knows" in result.err
    (sd_root / "anima_minimal_inference.py").unlink()
    missing = cli("grid", root)
    assert missing.code == 2 and "this sd-scripts has no anima_minimal_inference.py" in missing.err
    assert calls(root) == []


def test_a_lora_module_the_script_cannot_load_is_refused(sd_root, tmp_path, cli):
    root = family_project(tmp_path / "sd3", "sd3", 'network_module = "lycoris.kohya"\n')
    result = cli("grid", root)
    assert result.code == 2
    assert "sd3_minimal_inference.py loads networks.lora_sd3 LoRAs, but this project trains with lycoris.kohya" in (
        result.err
    )


def test_ctrl_c_stops_the_cell_and_keeps_the_finished_ones(sd_root, tmp_path):
    from kohya_wrap.grid import Checkpoint, GridRequest, Prompt
    from kohya_wrap.grid.minimal import MinimalGenerator, render_minimal_cells

    lora = tmp_path / "x-step00000002.safetensors"
    lora.write_bytes(b"lora")
    files = []
    for name in ("base", "clip_l", "t5xxl", "ae"):
        (tmp_path / name).write_bytes(b"m")
        files.append(("ckpt_path" if name == "base" else name, str(tmp_path / name)))
    request = GridRequest(
        [Checkpoint(lora, "step 2", "0" * 64)], [1.0], [Prompt("a")], list(range(1, 9)), [1.0], [4], ["default"], 64, 64
    )
    todo = {cell.key("base"): cell for cell in request.cells()}
    generator = MinimalGenerator(Path(sys.executable), sd_root, "flux_minimal_inference.py", "flux", tuple(files))
    seen = []

    def interrupt(count):
        seen.append(count)
        if len(seen) == 2:
            raise KeyboardInterrupt

    cache = tmp_path / "cache"
    outcome = render_minimal_cells(
        generator, todo, cache, tmp_path / "work", tmp_path / "render.log", interrupt, dict(os.environ)
    )
    assert outcome.interrupted and outcome.rendered == 2 and not outcome.failed
    assert sorted(p.stem for p in cache.glob("*.png")) == sorted(list(todo)[:2])


def test_ctrl_c_during_a_cell_stops_its_process(sd_root, tmp_path):
    import signal
    import threading
    import time

    from kohya_wrap.grid import Checkpoint, GridRequest, Prompt
    from kohya_wrap.grid.minimal import MinimalGenerator, render_minimal_cells

    lora = tmp_path / "x.safetensors"
    lora.write_bytes(b"lora")
    request = GridRequest(
        [Checkpoint(lora, "final", "0" * 64)], [1.0], [Prompt("a")], [1, 2], [1.0], [4], ["default"], 64, 64
    )
    todo = {cell.key("base"): cell for cell in request.cells()}
    (tmp_path / "base").write_bytes(b"m")
    generator = MinimalGenerator(
        Path(sys.executable), sd_root, "sd3_minimal_inference.py", "sd3", (("ckpt_path", str(tmp_path / "base")),)
    )
    env = dict(os.environ, KOHYA_WRAP_STANDIN_GEN_DELAY="30")
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        outcome = render_minimal_cells(
            generator, todo, tmp_path / "cache", tmp_path / "work", tmp_path / "render.log", None, env
        )
    finally:
        timer.cancel()
    assert outcome.interrupted and outcome.rendered == 0 and not outcome.failed
    assert time.monotonic() - started < 10  # the cell's process stopped, not waited for
    assert len(calls(tmp_path / "x")) == 1  # the second cell never started
