"""The `[sweep]` table of a spec: which settings a sweep varies, and how it picks the trials.

    [sweep]
    sampler = "grid"                           # every combination (default); "random": `count` draws
    "training.learning_rate" = [1e-4, 3e-4]    # a list: these values
    "training.network_dim" = [8, 16]
    # random only: a range, drawn uniformly (log = true: on a log scale); integers when low and high are
    # "training.learning_rate" = { low = 1e-5, high = 1e-3, log = true }

Keys are the spec paths `--set` takes. The values are checked here for shape only; each trial's whole
spec is validated (and the first problem named) before the sweep trains anything.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kohya_wrap.errors import KohyaWrapError
from kohya_wrap.spec.overrides import tomllib

Scalar = Union[bool, int, float, str]
KEY_SECTIONS = ("training", "dataset", "model", "sample", "launch", "concepts", "name")


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    low: Union[int, float]
    high: Union[int, float]
    log: bool = False

    @model_validator(mode="after")
    def check_order(self) -> "Range":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log = true needs low > 0 (got {self.low})")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


class SweepSpec(BaseModel):
    """`[sweep]`: `sampler`, `count`, `seed`, and one entry per varied setting (a dotted key)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    sampler: Literal["grid", "random"] = Field("grid", description="grid: every combination; random: `count` draws")
    count: Union[int, None] = Field(None, ge=1, le=10_000, description="random: how many trials")
    seed: int = Field(0, description="The seed of the trial order and of random draws.")

    @model_validator(mode="after")
    def check_entries(self) -> "SweepSpec":
        for key, value in (self.model_extra or {}).items():
            problem = entry_problem(key, value, self.sampler)
            if problem:
                quote = ' (quote dotted keys: "training.network_dim" = [8, 16])' if "path" in problem else ""
                raise ValueError(f'"{key}": {problem}{quote}')
        if self.sampler == "random" and self.count is None:
            raise ValueError("count: a random sweep needs how many trials to draw — e.g. count = 8")
        return self

    def space(self) -> dict[str, list[Scalar] | Range]:
        """The varied settings, in the spec's order: a list of values, or a Range."""
        return {
            key: (Range(**value) if isinstance(value, dict) else list(value))
            for key, value in (self.model_extra or {}).items()
        }


def entry_problem(key: str, value: Any, sampler: str) -> str | None:
    """Why `key = value` cannot be a sweep entry, or None."""
    if key.split(".", 1)[0] not in KEY_SECTIONS or ("." not in key and key != "name"):
        return f"not a setting's path (starts with one of {', '.join(KEY_SECTIONS)})"
    if key == "name":
        return "the trial names come from the sweep; vary another setting"
    if isinstance(value, dict):
        if sampler != "random":
            return 'a range needs sampler = "random" (a grid needs a list of values)'
        try:
            Range(**value)
        except (TypeError, ValueError) as exc:
            return f"not a range ({str(exc).splitlines()[-1].strip()}) — e.g. {{ low = 1e-5, high = 1e-3, log = true }}"
        return None
    if not isinstance(value, list) or not value:
        return "expected a non-empty list of values, e.g. [1e-4, 3e-4]"
    for item in value:
        if isinstance(item, (dict, list)):
            return "each value must be a number, a string or true/false"
    if len({repr(item) for item in value}) != len(value):
        return "a value is listed twice"
    return None


def parse_vary(texts: tuple[str, ...]) -> dict[str, list[Scalar]]:
    """`--vary training.learning_rate=1e-4,3e-4` → {"training.learning_rate": [0.0001, 0.0003]} (TOML values,
    else plain strings, like --set)."""
    space: dict[str, list[Scalar]] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise KohyaWrapError(f"--vary {text}: expected KEY=V1,V2", "e.g. --vary training.learning_rate=1e-4,3e-4")
        values: list[Scalar] = []
        for part in raw.split(","):
            part = part.strip()
            try:
                values.append(tomllib.loads(f"v = {part}")["v"])
            except tomllib.TOMLDecodeError:
                values.append(part)
        problem = entry_problem(key, values, "grid")
        if problem:
            raise KohyaWrapError(f"--vary {text}: {problem}", "e.g. --vary training.network_dim=8,16")
        space[key] = values
    return space
