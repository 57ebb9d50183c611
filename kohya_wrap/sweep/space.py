"""A sweep's trials: the combinations (grid) or draws (random) of the varied settings, picked by Optuna's
samplers — GridSampler and RandomSampler with the sweep's seed, so the same spec gives the same trials
on any machine. Optuna is asked for all the trials up front (its ask interface, no objective): the list
is written into sweep.json and never drawn again, which is what makes `--resume` run what is left.

Why Optuna and not Ray Tune: Optuna is a small pure-Python package that samples in-process, with
categorical, float (log) and integer distributions and seeded samplers; Ray Tune's search spaces need
Ray itself (hundreds of MB), which is only an optional extra here, for `--backend ray`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.spec.sweep import Range, Scalar


@dataclass(frozen=True)
class TrialValues:
    index: int  # 1-based, in the order trials run
    values: dict[str, Scalar]


def toml_value(value: Scalar) -> str:
    """The value as `--set` reads it back (TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise KohyaWrapError(f"sweep value {value} is not a number a spec can hold", "use a finite number")
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def sample_trials(
    space: dict[str, list[Scalar] | Range], sampler: str, count: int | None, seed: int
) -> list[dict[str, Scalar]]:
    """The trials' values, in Optuna's order: every combination for "grid" (`count`, if given, keeps the
    first ones), `count` draws for "random" (a draw equal to an earlier one is drawn again, up to a limit)."""
    import optuna  # only `sweep` pays its import

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not space:
        raise KohyaWrapError(
            "the sweep varies nothing",
            'add a [sweep] table ("training.learning_rate" = [1e-4, 3e-4]) or --vary KEY=V1,V2',
        )
    if sampler == "grid":
        lists = {key: values for key, values in space.items() if isinstance(values, list)}
        if len(lists) != len(space):
            raise KohyaWrapError("a grid sweep needs a list of values per setting", 'use sampler = "random" for ranges')
        total = math.prod(len(values) for values in lists.values())
        if total > 10_000:
            raise KohyaWrapError(
                f"the grid has {total} trials", 'vary fewer settings, or sample some: sampler = "random"'
            )
        study = optuna.create_study(sampler=optuna.samplers.GridSampler(_grid_space(lists), seed=seed))
        wanted = min(total, count) if count else total
    else:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        wanted = count or 1
    trials: list[dict[str, Scalar]] = []
    seen: set[str] = set()
    attempts = 0
    while len(trials) < wanted and attempts < wanted * 20:
        attempts += 1
        trial = study.ask()
        values = {key: _suggest(trial, key, values) for key, values in space.items()}
        marker = json.dumps(values, sort_keys=True)
        if marker in seen:
            continue
        seen.add(marker)
        trials.append(values)
    return trials


def _grid_space(lists: dict[str, list[Scalar]]) -> dict[str, list[Any]]:
    return {key: list(range(len(values))) for key, values in lists.items()}  # indices: Optuna sorts grid values


def _suggest(trial, key: str, values: list[Scalar] | Range) -> Scalar:
    if isinstance(values, Range):
        if values.integer:
            return trial.suggest_int(key, int(values.low), int(values.high), log=values.log)
        return trial.suggest_float(key, float(values.low), float(values.high), log=values.log)
    return values[trial.suggest_categorical(key, list(range(len(values))))]  # by index: any value types
