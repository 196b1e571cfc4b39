"""The data-size-aware default: `scaleflow train` picks its recipe by the number of training rows.

The defaults of `TrainConfig` were chosen at 10,000 rows (README, "Results"). At 1,000 rows the same
recipe's best weights come within the first 600 of its 3,000 steps, its last weights memorize, and its
samples are too flat (FD 2.3x its floor); the small-data study (README, "Small data") chose what replaces
them there: a network over a fitted Gaussian (`nets/gaussian_residual.py`), chosen by its samples. Each
row of `SIZE_RECIPES` sets some options for runs with at most `max_rows` training rows; an option the user
gave (command line, YAML file, Python) is never changed, and the choice is printed and recorded in
`summary.json` ("recipe").
`recipe: none` (`--recipe none`) keeps the plain defaults at every size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from scaleflow.training.config import residual_fits_path

# Options that define the network: a fine-tuning run (`init_from`) keeps its source's, so a recipe never
# sets them there.
NETWORK_OPTIONS = frozenset({"arch", "scale", "model", "prediction", "residual"})


@dataclass(frozen=True)
class SizeRecipe:
    """Options for runs with at most `max_rows` training rows, and the measurement that chose them. A recipe whose
    options include the Gaussian residual applies only to runs that can take it (`apply_recipe`)."""

    name: str
    max_rows: int
    options: dict[str, Any] = field(default_factory=dict)
    why: str = ""


# Chosen by the small-data study on the built-in data (README, "Small data"; configs/sweeps/small-data-residual.yaml
# and, for runs that keep no residual, configs/sweeps/small-data-recipe.yaml).
SIZE_RECIPES: tuple[SizeRecipe, ...] = (
    SizeRecipe(
        "small-data", 2000,
        {"residual": "gaussian", "scale": "tiny", "lr": 1e-3, "ema_decay": 0.99, "steps": 3000, "select_by": "samples",
         "patience": 5, "min_steps": 1500},
        "at 1,000 rows (3 paired seeds) the Gaussian residual with a tiny network at lr 1e-3 and EMA 0.99, its "
        "weights chosen by their samples, reaches worst ratio 0.584 against the plain defaults' 0.404 (+0.180 "
        "[+0.021, +0.340]; FD 2.3x -> 1.6x its floor) in ~170 s of training instead of ~460; at 2,000 rows 0.665 "
        "against 0.608; the same schedule without the residual is where the defaults are; patience counts from "
        "step 1,500 because the samples sit at the Gaussian's level for the first 500-1,000 steps (README, "
        "'Small data')"),
    SizeRecipe(
        "small-data without the residual", 1000,
        {"scale": "tiny", "lr": 3e-4, "steps": 2000, "select_by": "samples", "patience": 5},
        "for a run that keeps no Gaussian residual (given --residual none, a fine-tuning run, network options, a "
        "velocity prediction or a path the residual does not fit): at 1,000 rows (3 paired seeds) a tiny network "
        "at a lower rate, its weights chosen by their samples and stopped 5 validations after the best, ranks with "
        "the default (0.431 vs 0.404, +0.027 [-0.050, +0.103]) in 134 s of training instead of 461; at 2,000 rows "
        "it falls behind (README, 'Small data')"),
)


def _takes_residual(recipe: SizeRecipe) -> bool:
    return recipe.options.get("residual", "none") != "none"


def recipe_for(train_rows: int, recipes: tuple[SizeRecipe, ...] = SIZE_RECIPES,
               residual_possible: bool = True) -> Optional[SizeRecipe]:
    """The recipe for a run with `train_rows` training rows: the row of the table with the smallest `max_rows` at
    or above it, among those with the Gaussian residual where the run can take one (`residual_possible`) and one
    of them fits, else among those without; None when none fits (the plain defaults)."""
    fitting = [r for r in sorted(recipes, key=lambda r: r.max_rows) if train_rows <= r.max_rows]
    with_residual = [r for r in fitting if _takes_residual(r)]
    if residual_possible and with_residual:
        return with_residual[0]
    without = [r for r in fitting if not _takes_residual(r)]
    return without[0] if without else None


def _kept_options(config) -> set[str]:
    """The options a recipe leaves as they are: those given, a fine-tuned source's or chosen network, a non-AdamW
    optimizer's rate, and the residual where the run cannot take one."""
    given = config.model_fields_set
    keep = set(given)
    if config.init_from or "model" in given:  # a fine-tuned source's network, or network options the user chose
        keep |= NETWORK_OPTIONS
    if "optimizer" in given and config.optimizer != "adamw":  # the recipe's rate is AdamW's
        keep.add("lr")
    if config.prediction != "x1" or not residual_fits_path(config.flow, config.sigma):  # the residual's closed form
        keep.add("residual")
    return keep


def apply_recipe(config, train_rows: int, recipes: tuple[SizeRecipe, ...] = SIZE_RECIPES):
    """`config` with its size recipe's options filled in where the user gave none.

    Returns (config, record): `record` is None when nothing applies (`recipe: none`, a reference prior, a
    reflow run, no recipe for this size), else {"name", "max_rows", "train_rows", "set": {option: value}
    (what it changed), "kept": [options it left as they were], "why"}. A fine-tuning run, or one given network
    options (`model`), keeps its network; a run given another optimizer than AdamW keeps its rate. A run that
    keeps no Gaussian residual (given `residual: none`, or one of those) takes the table's first recipe without
    one, since the options chosen with the residual were not chosen for a network without it.
    """
    if config.recipe == "none" or config.is_reference or config.flow == "reflow":
        return config, None
    keep = _kept_options(config)
    residual_possible = "residual" not in keep or config.residual != "none"
    recipe = recipe_for(train_rows, recipes, residual_possible)
    if recipe is None:
        return config, None
    chosen = {k: v for k, v in recipe.options.items() if k not in keep}
    record = {"name": recipe.name, "max_rows": recipe.max_rows, "train_rows": train_rows, "set": chosen,
              "kept": sorted(k for k in recipe.options if k not in chosen), "why": recipe.why}
    # model_validate re-checks the combination (e.g. a scale the arch lacks) and marks every value as set,
    # so a resumed run's config.yaml is taken as it is.
    resolved = type(config).model_validate({**config.model_dump(), **chosen})
    return resolved, record


def describe(record: dict) -> str:
    """One line saying which recipe a run took, what it set and what the user kept."""
    settings = ", ".join(f"{k}={v}" for k, v in record["set"].items()) or "nothing (every option given)"
    kept = f"; kept as given: {', '.join(record['kept'])}" if record["kept"] else ""
    return (f"{record['train_rows']} training rows: the '{record['name']}' recipe (<= {record['max_rows']:,} rows) sets "
            f"{settings}{kept} (--recipe none: the plain defaults)")
