"""Every family's rendered configs, read by the real sd-scripts (marker `sdscripts`): for each network-
training script of the checkout — SDXL, FLUX, SD3, Lumina and HunyuanImage from kohya-wrap's family
table, and anima inferred from its name — `plan` renders train.toml and dataset.toml, and the
script's own argument parser, `read_config_from_file` and dataset-config blueprint (what its `train()`
does before it loads a model) accept them, with the network module and paths kohya-wrap meant. No model
is loaded: these models cannot be built on this machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import make_images

pytestmark = pytest.mark.sdscripts

# runs inside sd-scripts' venv, in its checkout: the same reading of the configs its scripts do at start
READER = r"""
import importlib.util, json, os, sys
sd, script, config, dataset, names = sys.argv[1:]
sys_files = names.split()
os.chdir(sd)
sys.path.insert(0, sd)
spec = importlib.util.spec_from_file_location(script[:-3], os.path.join(sd, script))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
parser = module.setup_parser()
sys.argv = [script, "--config_file", config, "--dataset_config", dataset]  # read_config_from_file parses it again
args = parser.parse_args()
from library import config_util, train_util
args = train_util.read_config_from_file(args, parser)
train_util.verify_training_args(args)  # as train() starts
train_util.prepare_dataset_args(args, True)
sanitizer = config_util.ConfigSanitizer(True, True, args.masked_loss, True)
blueprint = config_util.BlueprintGenerator(sanitizer).generate(config_util.load_user_config(args.dataset_config), args)
subsets = [s.params for d in blueprint.dataset_group.datasets for s in d.subsets]
print(json.dumps({
    "network_module": args.network_module,
    "pretrained": args.pretrained_model_name_or_path,
    "max_train_steps": args.max_train_steps,
    "output_name": args.output_name,
    "image_dirs": [s.image_dir for s in subsets],
    "num_repeats": [s.num_repeats for s in subsets],
    "resolution": list(blueprint.dataset_group.datasets[0].params.resolution),
    "model_files": {k: getattr(args, k, None) for k in sys_files},
}))
"""

CLIP_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
# the tokenizers the table's families load at start (check's offline look-up wants them in a cache dir;
# nothing here reads them)
TOKENIZERS = {
    "sdxl": {"openai_clip-vit-large-patch14": CLIP_FILES, "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k": CLIP_FILES},
    "flux": {"openai_clip-vit-large-patch14": CLIP_FILES, "google_t5-v1_1-xxl": ("spiece.model",)},
}

# family: (script, network module, [model] files, [training] file keys)
FAMILIES = {
    "sdxl": ("sdxl_train_network.py", "networks.lora", "", ""),
    "flux": ("flux_train_network.py", "networks.lora_flux", "clip_l t5xxl ae", ""),
    "sd3": ("sd3_train_network.py", "networks.lora_sd3", "clip_l t5xxl", "clip_g"),
    "lumina": ("lumina_train_network.py", "networks.lora_lumina", "ae", "gemma2"),
    "hunyuan_image": ("hunyuan_image_train_network.py", "networks.lora_hunyuan_image", "vae", "text_encoder byt5"),
    "anima": ("anima_train_network.py", "networks.lora_anima", "", "qwen3"),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_real_script_reads_what_plan_renders(family, tmp_path, real_sdscripts, cli):
    script, module, files, training_files = FAMILIES[family]
    if not (real_sdscripts / script).is_file():
        pytest.skip(f"this sd-scripts has no {script}")
    root = tmp_path / f"{family} 项目"
    root.mkdir()
    model = {"base": root / "base.safetensors"} | {name: root / f"{name}.safetensors" for name in files.split()}
    for path in model.values():
        path.write_bytes(b"not loaded")
    lines = "".join(f'{key} = "{path.as_posix()}"\n' for key, path in model.items())
    training = 'max_train_steps = 12\nmixed_precision = "no"\n'
    for name in training_files.split():  # relative: plan makes them absolute
        (root / f"{name}.safetensors").write_bytes(b"not loaded")
        training += f'{name} = "{name}.safetensors"\n'
    if family in TOKENIZERS:
        for folder, names in TOKENIZERS[family].items():
            (root / "tokenizers" / folder).mkdir(parents=True)
            for name in names:
                (root / "tokenizers" / folder / name).write_text("{}", encoding="utf-8")
        training += f'tokenizer_cache_dir = "{(root / "tokenizers").as_posix()}"\n'

    (root / "kohya-wrap.toml").write_text(
        f'name = "fam_{family}"\n[model]\nfamily = "{family}"\n{lines}'
        '[[concepts]]\ntoken = "mytoken"\nclass = "woman"\nrepeats = 3\n'
        "[dataset]\nresolution = 256\n[training]\n" + training,
        encoding="utf-8",
    )
    make_images(root / "image" / "3_mytoken woman", [(256, 256)] * 4)
    planned = cli("plan", root, "--json")
    assert planned.code == 0, planned.out + planned.err
    python = Path(__import__("os").environ["KOHYA_WRAP_SD_PYTHON"])
    read = subprocess.run(
        [
            str(python),
            "-c",
            READER,
            str(real_sdscripts),
            script,
            str(root / "config" / "train.toml"),
            str(root / "config" / "dataset.toml"),
            f"{files} {training_files}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert read.returncode == 0, read.stderr[-3000:]
    got = json.loads(read.stdout.strip().splitlines()[-1])
    assert got["network_module"] == module
    assert got["pretrained"] == str(model["base"]) and got["max_train_steps"] == 12
    assert got["output_name"] == f"fam_{family}" and got["resolution"] == [256, 256]
    assert got["image_dirs"] == [str(root / "image" / "3_mytoken woman")] and got["num_repeats"] == [3]
    for name in files.split():
        assert got["model_files"][name] == str(model[name])
    for name in training_files.split():
        assert got["model_files"][name] == str(root / f"{name}.safetensors")
    check = cli("check", root)
    known = family != "anima"
    assert ("is not in kohya-wrap's family table" in check.out + check.err) is not known
