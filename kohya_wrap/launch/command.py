"""Pure: the exact argv that starts training — accelerate launch, its options, the script, our configs."""

from __future__ import annotations

import shlex
import sys

from kohya_wrap.paths import ProjectLayout
from kohya_wrap.sdscripts.locate import SdScripts
from kohya_wrap.spec.models import LaunchSpec
from kohya_wrap.spec.settings import Settings
from kohya_wrap.workers import cpu_count


def build_launch_command(
    launch: LaunchSpec, settings: Settings, layout: ProjectLayout, sd: SdScripts, cores: int | None = None
) -> list[str]:
    """`python -m accelerate.commands.launch` rather than the venv's `accelerate` script: works for any
    venv layout. Every option is passed explicitly, so accelerate needs no config file and prints no
    "values were not passed" warnings. `cores`: this machine's (default: those this process may use)."""
    threads = launch.num_cpu_threads_per_process or max(1, (cores or cpu_count()) // launch.processes_per_machine)
    argv = [
        str(sd.python),
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(launch.num_processes),
        "--num_machines",
        str(launch.num_machines),
        "--mixed_precision",
        settings.mixed_precision,
        "--dynamo_backend",
        "no",
        "--num_cpu_threads_per_process",
        str(threads),
    ]
    multi_gpu = launch.multi_gpu if launch.multi_gpu is not None else launch.num_processes > 1
    if multi_gpu:
        argv.append("--multi_gpu")
    if launch.gpu_ids is not None:
        argv += ["--gpu_ids", launch.gpu_ids]
    if launch.num_machines > 1:
        argv += [
            "--machine_rank",
            str(launch.machine_rank),
            "--main_process_ip",
            str(launch.main_process_ip),
            "--main_process_port",
            str(launch.main_process_port),
        ]
    argv += [
        str(sd.script(settings.script)),
        "--config_file",
        str(layout.train_config),
        "--dataset_config",
        str(layout.dataset_config),
    ]
    return argv


def command_line(argv: list[str]) -> str:
    """The argv as one line a user can paste into their shell."""
    if sys.platform == "win32":
        import subprocess

        return subprocess.list2cmdline(argv)
    return shlex.join(argv)
