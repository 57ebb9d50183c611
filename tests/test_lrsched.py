"""The learning rate shown on the dashboard and written to metrics.csv: our formulas, and (marker
`sdscripts`) the same numbers from transformers' schedulers in sd-scripts' own venv."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from kohya_wrap.sdscripts.lrsched import schedule

SD_PYTHON = os.environ.get("KOHYA_WRAP_SD_PYTHON")  # read before the tests' environment isolation
DEFAULTS = {"lr_scheduler": "constant", "lr_warmup_steps": 0, "lr_scheduler_num_cycles": 1, "lr_scheduler_power": 1}
CASES = [
    ({"learning_rate": 1e-4}, 100),
    (
        {"unet_lr": 2e-4, "learning_rate": 1e-4, "lr_scheduler": "cosine_with_restarts", "lr_scheduler_num_cycles": 3},
        90,
    ),
    ({"learning_rate": 1e-4, "lr_scheduler": "cosine", "lr_warmup_steps": 10}, 100),
    ({"learning_rate": 1e-4, "lr_scheduler": "linear", "lr_warmup_steps": 0.1}, 50),
    ({"learning_rate": 1e-4, "lr_scheduler": "constant_with_warmup", "lr_warmup_steps": 5}, 20),
    ({"learning_rate": 1e-3, "lr_scheduler": "polynomial", "lr_scheduler_power": 2.0, "lr_warmup_steps": 3}, 30),
]


def at(args: dict, total: int, processes: int = 1):
    return schedule(args, total, processes, DEFAULTS.get)


def test_formulas():
    assert at({"learning_rate": 1e-4}, 10)(7) == 1e-4
    cosine = at({"learning_rate": 1e-4, "lr_scheduler": "cosine", "lr_warmup_steps": 10}, 110)
    assert cosine(5) == pytest.approx(5e-5) and cosine(10) == pytest.approx(1e-4) and cosine(60) == pytest.approx(5e-5)
    assert cosine(110) == pytest.approx(0.0, abs=1e-12)
    restarts = at(CASES[1][0], 90)
    assert restarts(0) == pytest.approx(2e-4) and restarts(30) == pytest.approx(2e-4)  # unet_lr wins; 3 cycles restart
    assert at({"learning_rate": 1e-4, "lr_scheduler": "linear", "lr_warmup_steps": 0.1}, 50)(5) == pytest.approx(
        1e-4
    )  # 10 % of 50
    two_gpus = at({"learning_rate": 1e-4, "lr_scheduler": "linear"}, 100, processes=2)
    assert two_gpus(50) == pytest.approx(5e-5)  # accelerate steps the scheduler once per process: 100 of 200


def test_unknown_rates_are_not_guessed():
    assert at({"learning_rate": 1e-4, "optimizer_type": "Prodigy"}, 10) is None
    assert at({"learning_rate": 1e-4, "lr_scheduler": "adafactor:1e-4"}, 10) is None
    assert at({"learning_rate": 1e-4, "lr_scheduler_type": "CosineAnnealingLR"}, 10) is None
    assert at({"learning_rate": 1e-4, "lr_scheduler": "warmup_stable_decay"}, 10) is None


@pytest.mark.sdscripts
def test_same_rates_as_transformers_in_sd_scripts_venv():
    python = SD_PYTHON
    if not python:
        pytest.skip("set KOHYA_WRAP_SD_PYTHON to sd-scripts' venv python")
    code = (
        "import json, sys, torch\n"
        "from transformers.optimization import SchedulerType, TYPE_TO_SCHEDULER_FUNCTION as F\n"
        "out = []\n"
        "for args, total in json.loads(sys.argv[1]):\n"
        "    a = {**json.loads(sys.argv[2]), **args}\n"
        "    lr = a.get('unet_lr') or a['learning_rate']\n"
        "    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)\n"
        "    name = SchedulerType(a['lr_scheduler'])\n"
        "    w = a['lr_warmup_steps']; w = int(w * total) if isinstance(w, float) else w\n"
        "    kw = {} if name == SchedulerType.CONSTANT else {'num_warmup_steps': w}\n"
        "    if name not in (SchedulerType.CONSTANT, SchedulerType.CONSTANT_WITH_WARMUP): kw['num_training_steps'] = "
        "total\n"
        "    if name == SchedulerType.COSINE_WITH_RESTARTS: kw['num_cycles'] = a['lr_scheduler_num_cycles']\n"
        "    if name == SchedulerType.POLYNOMIAL: kw['power'] = a['lr_scheduler_power']\n"
        "    s = F[name](opt, **kw); rates = []\n"
        "    for _ in range(total):\n"
        "        opt.step(); s.step(); rates.append(s.get_last_lr()[0])\n"
        "    out.append(rates)\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [python, "-c", code, json.dumps(CASES), json.dumps(DEFAULTS)], capture_output=True, text=True, check=True
    )
    for (args, total), expected in zip(CASES, json.loads(result.stdout), strict=True):
        ours = at(args, total)
        assert [ours(step) for step in range(1, total + 1)] == pytest.approx(expected, rel=1e-9, abs=1e-15), args
