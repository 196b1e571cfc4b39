#!/usr/bin/env python3
"""The small-data figure: each measure against its floor over 1,000 to 10,000 training rows, one line for the
plain defaults, one for the small-data recipe, and the reference priors where the sweeps fitted them.

The sizes were measured by separate sweeps (README, "Small data"); this script reads their records as they are
and draws them on one set of axes with the sweeps' own plotting code.

    python scripts/small_data_figure.py --out docs/figures/small_data_sizes.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from scaleflow.sweeps.plots import plot_measures_vs
from scaleflow.sweeps.summary import flatten

PLAIN, RECIPE = "plain defaults", "small-data recipe (Gaussian residual)"
MIN_SEEDS = 3  # a point with fewer seeds has an interval too wide to draw beside the others (1 degree of freedom)


def label_of(config: dict) -> str | None:
    """Which line a trial belongs to (None: neither, left out)."""
    if config.get("residual") == "none":  # the recipe without its residual: a control, not a line here
        return None
    if config.get("recipe") == "auto" or config.get("residual") == "gaussian":
        return RECIPE
    if config.get("steps", 3000) != 3000:  # the 10K finalists' longer schedule
        return None
    return PLAIN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweeps", nargs="+", default=["sweeps/small-data-residual", "sweeps/small-data-5k",
                                                         "sweeps/small-data-residual-5k", "sweeps/defaults-finalists"])
    parser.add_argument("--out", default="docs/figures/small_data_sizes.png")
    args = parser.parse_args()
    rows = []
    for folder in args.sweeps:
        for line in (Path(folder) / "results.jsonl").read_text().splitlines():
            record = json.loads(line)
            label = label_of(record["config"])
            if label is not None and record["status"] == "ok":
                rows.append({**flatten(record), "prior": label})
    counts = {}
    for row in rows:
        counts[(row["prior"], row["n_train"])] = counts.get((row["prior"], row["n_train"]), 0) + 1
    for (prior, n), count in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        kept = count >= MIN_SEEDS
        print(f"{prior}, {n} rows: {count} seeds{'' if kept else f' (left out: fewer than {MIN_SEEDS})'}")
    rows = [r for r in rows if counts[(r["prior"], r["n_train"])] >= MIN_SEEDS]
    print(f"wrote {plot_measures_vs(rows, 'n_train', ['prior'], args.out)}")


if __name__ == "__main__":
    main()
