"""A sweep's trials: its spec expanded by design (grid, one at a time, random) into option dicts."""
from __future__ import annotations

import itertools
import random
from typing import Any

from scaleflow.sweeps.spec import SweepSpec, canonical


def _grid(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every combination, the last axis varying fastest (axes in the order the spec lists them)."""
    names = list(spec.axes)
    return [dict(zip(names, values)) for values in itertools.product(*spec.axes.values())]


def _one_at_a_time(spec: SweepSpec) -> list[dict[str, Any]]:
    """The base point, then each axis moved alone through its other values; every such point at each
    combination of the crossed axes (crossed values vary slowest)."""
    moved = [dict(spec.base)]
    for option, values in spec.axes.items():
        if option in spec.cross:
            continue
        for value in values:
            if canonical(value) != canonical(spec.base[option]):
                moved.append({**spec.base, option: value})
    crossed = [dict(zip(spec.cross, values)) for values in itertools.product(*(spec.axes[c] for c in spec.cross))]
    return [{**point, **combination} for combination in crossed for point in moved]


def _excluded(trial: dict[str, Any], spec: SweepSpec) -> bool:
    return any(all(key in trial and canonical(trial[key]) == canonical(value) for key, value in entry.items())
               for entry in spec.exclude)


def expand(spec: SweepSpec) -> list[dict[str, Any]]:
    """The trials' options: `fixed` overlaid with each point's axis values, plus `seed`.

    Deterministic: points in design order, each point's seeds together in the order listed.
    Exclusions are dropped before a random draw, so `n_random` counts trials that will run.
    """
    points = _one_at_a_time(spec) if spec.design == "one_at_a_time" else _grid(spec)
    # An exclusion can name the seed, so it is checked per trial; a point survives if any seed does.
    trials = [[{**spec.fixed, **point, "seed": seed} for seed in spec.seeds] for point in points]
    trials = [kept for kept in ([t for t in group if not _excluded(t, spec)] for group in trials) if kept]
    if spec.design == "random" and spec.n_random < len(trials):
        chosen = random.Random(spec.design_seed).sample(range(len(trials)), spec.n_random)
        trials = [trials[i] for i in sorted(chosen)]  # keep grid order: easier to read, same set
    return [trial for group in trials for trial in group]
