"""A stand-in sd-scripts for `run` tests: its train_network.py replays a recording of a real sd-scripts
run (tests/fixtures/sdscripts_logs/*.jsonl) on the same pipes, at a chosen speed, writes the checkpoint
files the recording saved (under the project's own output name), exits with the recorded code, and stops
on SIGINT as sd-scripts does (KeyboardInterrupt, nothing saved). A tiny `accelerate.commands.launch`
beside it runs the script the way accelerate does for one process (the launch command runs with the
checkout as its working folder, so `python -m accelerate...` finds this one first).

With KOHYA_WRAP_SIMULATE set it instead simulates sd-scripts v0.10.1's training loop where resuming is
concerned (our own model of its behaviour, checked against the real one in tests/test_sdscripts_resume.py):
--resume reads train_state.json, the epoch/step skipping and its `global_step` arithmetic (the step bar,
step-named checkpoints, state folders and their train_state.json all use it), saves by step and epoch.
Every file it saves holds "trained=N", the number of steps really trained into it, so a test can tell a
file's name from its content. KOHYA_WRAP_SIMULATE is the number of batches per epoch;
KOHYA_WRAP_SIMULATE_DIE_AFTER=N makes it crash after training N steps."""

from __future__ import annotations

from pathlib import Path

from standin import CONFIG_UTIL, TRAIN_UTIL

REPLAY = """\
import argparse, json, os, re, signal, sys, time
from pathlib import Path

from library import train_util


def setup_parser():
    parser = argparse.ArgumentParser()
    train_util.add_training_arguments(parser)
    parser.add_argument("--config_file", type=str, default=None)
    parser.add_argument("--dataset_config", type=str, default=None)
    parser.add_argument("--network_module", type=str, default=None)
    parser.add_argument("--network_dim", type=int, default=None)
    parser.add_argument("--network_alpha", type=float, default=1)
    return parser


def main():
    if os.environ.get("KOHYA_WRAP_SIMULATE"):
        import simulate
        return simulate.main()
    args = setup_parser().parse_args()
    if os.environ.get("KOHYA_WRAP_STANDIN_ENV_LOG"):  # which GPU a sweep trial was given
        with open(os.environ["KOHYA_WRAP_STANDIN_ENV_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{os.path.basename(args.config_file)} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}\\n")
    config_text = Path(args.config_file).read_text(encoding="utf-8")
    # the project: output_dir's parent (<project>/model); the configs may be rendered elsewhere (a sweep trial's)
    found = re.search(r'^output_dir = "(.*)"$', config_text, re.M)
    project = str(Path(found.group(1)).parent) if found else str(Path(args.config_file).resolve().parent.parent)
    # the recordings trained a LoRA named rec_lora; save under this project's name instead
    found = re.search(r'^output_name = "(.*)"$', Path(args.config_file).read_text(encoding="utf-8"), re.M)
    name = found.group(1) if found else "rec_lora"
    replay = os.environ["KOHYA_WRAP_REPLAY"]
    speed = float(os.environ.get("KOHYA_WRAP_REPLAY_SPEED", "20"))
    # KOHYA_WRAP_REPLAY_IF="TEXT::PATH[::SPEED]": a config that holds TEXT replays PATH instead (at SPEED):
    # one sweep trial fails, or runs slowly enough to be stopped
    text, _, other = os.environ.get("KOHYA_WRAP_REPLAY_IF", "").partition("::")
    if text and text in Path(args.config_file).read_text(encoding="utf-8"):
        replay, _, alt_speed = other.partition("::")
        speed = float(alt_speed or speed)
    records = [json.loads(line) for line in open(replay, encoding="utf-8")]
    out = {"stdout": sys.stdout, "stderr": sys.stderr, "pty": sys.stdout}
    start = time.monotonic()
    try:
        for record in records[1:]:
            delay = record["t"] / speed - (time.monotonic() - start)
            if delay > 0:
                time.sleep(delay)
            if "exit" in record:
                code = record["exit"]
                if code < 0:
                    signal.signal(-code, signal.SIG_DFL)
                    os.kill(os.getpid(), -code)
                sys.exit(code)
            data = record["data"].replace("<PROJECT>", project).replace("rec_lora", name)
            for line in data.splitlines():
                if line.startswith("saving checkpoint: "):
                    target = Path(line[len("saving checkpoint: "):].strip())
                    target.parent.mkdir(parents=True, exist_ok=True)  # as sd-scripts makes output_dir
                    target.write_bytes(b"stand-in LoRA")
            out[record["stream"]].write(data)
            out[record["stream"]].flush()
    except KeyboardInterrupt:
        sys.stderr.write("Traceback (most recent call last):\\nKeyboardInterrupt\\n")
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    main()
"""

RESUME_OPTIONS = """\
    parser.add_argument("--save_state", action="store_true")
    parser.add_argument("--save_last_n_epochs_state", type=int, default=None)
    parser.add_argument("--save_last_n_steps_state", type=int, default=None)
    parser.add_argument("--resume", type=str, default=None)
    parser.add_argument("--skip_until_initial_step", action="store_true")
    parser.add_argument("--initial_step", type=int, default=None)
    parser.add_argument("--initial_epoch", type=int, default=None)
"""

SIMULATE = """\
import json, math, os, sys
try:
    import tomllib
except ImportError:
    import tomli as tomllib
from pathlib import Path


def arg(argv, name, flag=False):
    if flag:
        return name in argv
    return argv[argv.index(name) + 1] if name in argv else None


def main():
    argv = sys.argv[1:]
    config = {}
    for section in tomllib.loads(Path(arg(argv, "--config_file")).read_text(encoding="utf-8")).values():
        config.update(section if isinstance(section, dict) else {})
    output_dir = Path(arg(argv, "--output_dir") or config["output_dir"])
    name, ext = config.get("output_name", "last"), "." + config.get("save_model_as", "safetensors")
    batches = int(os.environ["KOHYA_WRAP_SIMULATE"])
    accumulation = int(config.get("gradient_accumulation_steps", 1))
    per_epoch = math.ceil(batches / accumulation)
    if config.get("max_train_epochs"):
        total = config["max_train_epochs"] * per_epoch
    else:
        total = int(config.get("max_train_steps", 1600))
    epochs = math.ceil(total / per_epoch)
    every_steps, every_epochs = config.get("save_every_n_steps"), config.get("save_every_n_epochs")
    save_state = config.get("save_state")
    die_after = int(os.environ.get("KOHYA_WRAP_SIMULATE_DIE_AFTER", "0"))
    print(f"  num batches per epoch / 1epochのバッチ数: {batches}")
    print(f"  num epochs / epoch数: {epochs}")
    print(f"  total optimization steps / 学習ステップ数: {total}", flush=True)

    trained, from_state = 0, None
    resume = arg(argv, "--resume")
    if resume:
        trained = int((Path(resume) / "network.txt").read_text().split("=")[1])
        from_state = json.loads((Path(resume) / "train_state.json").read_text())["current_step"]
    initial_step, epoch_to_start = from_state or 0, 0
    if initial_step > 0:
        assert total > initial_step, f"max_train_steps should be greater than initial step: {total} vs {initial_step}"
        if arg(argv, "--skip_until_initial_step", flag=True):
            initial_step *= accumulation
            epoch_to_start = initial_step // per_epoch
        else:
            epoch_to_start, initial_step = initial_step // per_epoch, 0
    global_step = 0
    if initial_step > 0:
        for _ in range(epoch_to_start):
            initial_step -= batches
        global_step = initial_step
    bar_total = total - initial_step
    done = 0

    def save(path, weights):
        output_dir.mkdir(parents=True, exist_ok=True)
        print(f"saving checkpoint: {path}", flush=True)
        path.write_text(f"trained={weights}")

    def save_state_to(folder, step):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "network.txt").write_text(f"trained={trained}")
        (folder / "train_state.json").write_text(json.dumps({"current_epoch": epoch + 1, "current_step": step}))

    def bar():
        loss = f", avr_loss=0.{trained}" if done else ""  # tqdm shows the loss once a step has set it
        percent = 100 * done // max(bar_total, 1)
        sys.stderr.write(f"\\rsteps: {percent:3d}%|#| {done}/{bar_total} [00:00<00:00, 10.00it/s{loss}]")
        sys.stderr.flush()

    epoch = 0
    bar()
    for epoch in range(epoch_to_start, epochs):
        print(f"\\nepoch {epoch + 1}/{epochs}\\n", flush=True)
        skip = 0
        if initial_step > 0:
            skip, initial_step = initial_step, 0
        for batch in range(batches):
            if skip:
                skip -= 1
                continue
            trained += 1
            global_step += 1
            done += 1
            bar()
            if every_steps and global_step % every_steps == 0:
                save(output_dir / f"{name}-step{global_step:08d}{ext}", trained)
                if save_state:
                    save_state_to(output_dir / f"{name}-step{global_step:08d}-state", global_step)
            if die_after and done >= die_after:
                raise SystemExit("simulated crash")
            if global_step >= total:
                break
        if every_epochs and (epoch + 1) % every_epochs == 0 and epoch + 1 < epochs:
            save(output_dir / f"{name}-{epoch + 1:06d}{ext}", trained)
            if save_state:
                save_state_to(output_dir / f"{name}-{epoch + 1:06d}-state", global_step)
    if save_state:
        save_state_to(output_dir / f"{name}-state", global_step)
    save(output_dir / f"{name}{ext}", trained)
    print("model saved.", flush=True)


if __name__ == "__main__":
    main()
"""

LAUNCH = """\
import subprocess, sys


def main():
    argv = sys.argv[1:]
    script = next(i for i, arg in enumerate(argv) if arg.endswith(".py"))
    child = subprocess.Popen([sys.executable, *argv[script:]])
    try:
        code = child.wait()
    except KeyboardInterrupt:
        child.wait()
        raise
    sys.exit(code if code >= 0 else 1)


if __name__ == "__main__":
    main()
"""


GEN_IMG = '''\
"""Stand-in for sd-scripts' gen_img.py: reads --from_file prompt lines the way it does (options after
" --"), and writes each image (--f name) as a flat colour computed from everything that decides the
real image: seed, steps, cfg, sampler, size, the network multipliers (--am) and the networks' bytes.
A prompt containing "crash" stops it with an error, as a failing generation would; one containing
"nan" comes out black, as the real one's does when the decoded image is NaN. Every image it
writes is appended to $KOHYA_WRAP_STANDIN_GEN_LOG when that is set."""
import argparse, hashlib, os, sys, time
from PIL import Image

parser = argparse.ArgumentParser()
parser.add_argument("--ckpt"); parser.add_argument("--outdir"); parser.add_argument("--from_file")
parser.add_argument("--sampler", default="ddim"); parser.add_argument("--batch_size", type=int, default=1)
parser.add_argument("--images_per_prompt", type=int, default=1); parser.add_argument("--sdpa", action="store_true")
parser.add_argument("--sdxl", action="store_true"); parser.add_argument("--v2", action="store_true")
parser.add_argument("--v_parameterization", action="store_true"); parser.add_argument("--vae")
parser.add_argument("--tokenizer_cache_dir"); parser.add_argument("--clip_skip", type=int)
parser.add_argument("--network_module", nargs="*"); parser.add_argument("--network_weights", nargs="*")
parser.add_argument("--network_mul", type=float, nargs="*")
parser.add_argument("--fp16", action="store_true"); parser.add_argument("--bf16", action="store_true")
args = parser.parse_args()
networks = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (args.network_weights or [])]
print(f"loaded {len(networks)} network(s)", flush=True)
lines = [l for l in open(args.from_file, encoding="utf-8").read().splitlines() if l.strip()]
os.makedirs(args.outdir, exist_ok=True)
for index, line in enumerate(lines):
    prompt, *options = line.split(" --")
    opts = {o.split(" ", 1)[0]: o.split(" ", 1)[1] if " " in o else "" for o in options}
    print(f"prompt {index + 1}/{len(lines)}: {prompt}", flush=True)
    if "crash" in prompt:
        print("RuntimeError: stand-in generation failed on purpose", flush=True)
        sys.exit(1)
    muls = [float(v) for v in opts.get("am", "").split(",") if v] or [1.0] * len(networks)
    active = [f"{n}:{m:g}" for n, m in zip(networks, muls) if m != 0]
    fields = [prompt, opts.get("n", ""), opts["d"], opts["s"], opts["l"], args.sampler, opts["w"], opts["h"], *active]
    basis = "|".join(fields)
    digest = hashlib.sha256(basis.encode()).digest()
    time.sleep(float(os.environ.get("KOHYA_WRAP_STANDIN_GEN_DELAY", "0")))  # tests that need time to press Ctrl-C
    colour = tuple(digest[:3])
    if "nan" in prompt:
        print("gen_img.py:934: RuntimeWarning: invalid value encountered in cast", flush=True)
        colour = (0, 0, 0)
    Image.new("RGB", (int(opts["w"]), int(opts["h"])), colour).save(os.path.join(args.outdir, opts["f"]))
    if os.environ.get("KOHYA_WRAP_STANDIN_GEN_LOG"):
        with open(os.environ["KOHYA_WRAP_STANDIN_GEN_LOG"], "a", encoding="utf-8") as log:
            log.write(opts["f"] + "\\n")
'''


def build_standin_trainer(root: Path) -> Path:
    (root / "library").mkdir(parents=True)
    (root / "library" / "__init__.py").write_text("", encoding="utf-8")
    (root / "library" / "train_util.py").write_text(
        TRAIN_UTIL.format(lr_scheduler="constant", precisions='["no", "fp16", "bf16"]', extra=RESUME_OPTIONS),
        encoding="utf-8",
    )
    (root / "library" / "config_util.py").write_text(CONFIG_UTIL, encoding="utf-8")
    (root / "train_network.py").write_text(REPLAY, encoding="utf-8")
    (root / "simulate.py").write_text(SIMULATE, encoding="utf-8")
    (root / "gen_img.py").write_text(GEN_IMG, encoding="utf-8")
    launch = root / "accelerate" / "commands"
    launch.mkdir(parents=True)
    (root / "accelerate" / "__init__.py").write_text("", encoding="utf-8")
    (launch / "__init__.py").write_text("", encoding="utf-8")
    (launch / "launch.py").write_text(LAUNCH, encoding="utf-8")
    return root
