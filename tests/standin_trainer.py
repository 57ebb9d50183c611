"""A stand-in sd-scripts for `run` tests: its train_network.py replays a recording of a real sd-scripts
run (tests/fixtures/sdscripts_logs/*.jsonl) on the same pipes, at a chosen speed, writes the checkpoint
files the recording saved (under the project's own output name), exits with the recorded code, and stops on SIGINT as sd-scripts does
(KeyboardInterrupt, nothing saved). A tiny `accelerate.commands.launch` beside it runs the script the
way accelerate does for one process (the launch command runs with the checkout as its working folder,
so `python -m accelerate...` finds this one first)."""

from __future__ import annotations

from pathlib import Path

from standin import CONFIG_UTIL, TRAIN_UTIL

REPLAY = '''\
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
    args = setup_parser().parse_args()
    project = str(Path(args.config_file).resolve().parent.parent)
    # the recordings trained a LoRA named rec_lora; save under this project's name instead
    found = re.search(r'^output_name = "(.*)"$', Path(args.config_file).read_text(encoding="utf-8"), re.M)
    name = found.group(1) if found else "rec_lora"
    records = [json.loads(line) for line in open(os.environ["KOHYA_WRAP_REPLAY"], encoding="utf-8")]
    speed = float(os.environ.get("KOHYA_WRAP_REPLAY_SPEED", "20"))
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
'''

LAUNCH = '''\
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
'''


def build_standin_trainer(root: Path) -> Path:
    (root / "library").mkdir(parents=True)
    (root / "library" / "__init__.py").write_text("", encoding="utf-8")
    (root / "library" / "train_util.py").write_text(
        TRAIN_UTIL.format(lr_scheduler="constant", precisions='["no", "fp16", "bf16"]', extra=""), encoding="utf-8")
    (root / "library" / "config_util.py").write_text(CONFIG_UTIL, encoding="utf-8")
    (root / "train_network.py").write_text(REPLAY, encoding="utf-8")
    launch = root / "accelerate" / "commands"
    launch.mkdir(parents=True)
    (root / "accelerate" / "__init__.py").write_text("", encoding="utf-8")
    (launch / "__init__.py").write_text("", encoding="utf-8")
    (launch / "launch.py").write_text(LAUNCH, encoding="utf-8")
    return root
