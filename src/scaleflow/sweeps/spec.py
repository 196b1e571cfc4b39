"""What a sweep varies: axes of option values, fixed options, exclusions, seeds and a design.

Validated once here (pydantic), so the design and the runners can trust every field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scaleflow.sweeps.records import canonical
from scaleflow.sweeps.tasks import TASKS, known_options
from scaleflow.training.config import ConfigError, read_yaml_mapping, validation_message

__all__ = ["SweepSpec", "canonical", "load_sweep"]  # canonical: re-exported, it lives in records


class SweepSpec(BaseModel):
    """A sweep: every trial is `fixed` overlaid with one value per axis, plus a seed."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the sweep's name (results folder, plots)")
    task: str = Field("train", description="what each trial runs")
    axes: dict[str, list[Any]] = Field(description="option name -> the values it takes")
    fixed: dict[str, Any] = Field(default_factory=dict, description="options every trial shares")
    exclude: list[dict[str, Any]] = Field(default_factory=list,
                                          description="a trial matching every key/value of one entry is dropped")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="every point runs once per seed")
    design: Literal["grid", "one_at_a_time", "random"] = "grid"
    base: dict[str, Any] = Field(default_factory=dict, description="one_at_a_time: the centre point")
    cross: list[str] = Field(default_factory=list, description="one_at_a_time: axes crossed with every point "
                             "(e.g. n_train: the whole screen at each data size) instead of moved alone")
    n_random: Optional[int] = Field(None, ge=1, description="random: how many grid points to draw")
    design_seed: int = Field(0, description="random: the draw's seed")

    @model_validator(mode="after")
    def _consistent(self) -> "SweepSpec":
        if not self.axes:
            raise ValueError("axes: give at least one option with a list of values")
        for option, values in self.axes.items():
            if not values:
                raise ValueError(f"axes.{option}: empty list; give at least one value")
            keys = [canonical(v) for v in values]
            if len(set(keys)) != len(keys):
                raise ValueError(f"axes.{option}: a value appears twice")
        # A seed axis would clash with `seeds`; an option both varied and fixed is ambiguous.
        for option in self.axes:
            if option == "seed":
                raise ValueError("axes.seed: list seeds under `seeds`, not as an axis")
            if option in self.fixed:
                raise ValueError(f"axes.{option}: also in fixed; an option is either varied or fixed")
        if "seed" in self.fixed:
            raise ValueError("fixed.seed: list seeds under `seeds`")
        if self.task not in TASKS:
            raise ValueError(f"task: {self.task!r} is not one of {', '.join(TASKS)}")
        known_names = set(known_options(self.task))
        for where, names in (("axes", self.axes), ("fixed", self.fixed)):
            for option in names:
                if option not in known_names:
                    raise ValueError(f"{where}.{option}: not an option of a {self.task} trial; "
                                     f"known: {', '.join(sorted(known_names))}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: a seed appears twice")
        known = {*self.axes, *self.fixed, "seed"}
        for i, entry in enumerate(self.exclude):
            if not entry:
                raise ValueError(f"exclude.{i}: empty entry would drop every trial")
            unknown = sorted(set(entry) - known)
            if unknown:  # almost always a typo, which would silently exclude nothing
                raise ValueError(f"exclude.{i}: {', '.join(unknown)} is not an axis, fixed option or seed")
        if self.design == "one_at_a_time":
            for option in self.cross:
                if option not in self.axes:
                    raise ValueError(f"cross.{option}: not an axis")
            for option, values in self.axes.items():
                if option in self.cross:
                    if option in self.base:
                        raise ValueError(f"base.{option}: a crossed axis takes all its values; no base value")
                    continue
                if option not in self.base:
                    raise ValueError(f"base.{option}: one_at_a_time needs a base value for every axis")
                if canonical(self.base[option]) not in {canonical(v) for v in values}:
                    raise ValueError(f"base.{option}: {self.base[option]!r} is not one of the axis's values")
            extra = sorted(set(self.base) - set(self.axes))
            if extra:
                raise ValueError(f"base: {', '.join(extra)} is not an axis")
        elif self.base or self.cross:
            raise ValueError(f"base, cross: only used by design one_at_a_time (design is {self.design})")
        if self.design == "random" and self.n_random is None:
            raise ValueError("n_random: design random needs how many grid points to draw")
        if self.design != "random" and self.n_random is not None:
            raise ValueError(f"n_random: only used by design random (design is {self.design})")
        return self


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML file.

    Raises:
        ConfigError: one line naming the file and the problem.
    """
    path = Path(path)
    loaded = read_yaml_mapping(path, "sweep file", "sweep YAML file")
    if loaded is None:
        raise ConfigError(f"{path}: empty; a sweep needs at least name and axes")
    try:
        return SweepSpec(**loaded)
    except ValidationError as err:
        raise ConfigError(validation_message(err, f"{path}: ", SweepSpec, "key", "sweep")) from None
    except TypeError as err:  # non-string top-level keys
        raise ConfigError(f"{path}: {err}") from None
