#!/usr/bin/env python3
"""Seconds that the reference priors add to an evaluation (`reference.scoring.score_references`): each prior's
fit (with its choice on the validation rows), its samples and their scores, at 1K and 10K training rows of the
built-in data (384-D), n = 1,000 against the test split, one seed, no cache. Also prints each prior's worst
ratio and binding measure. Run:
    python benchmarks/reference_cost.py [--threads 1] [--sizes 1000,10000] [--priors gaussian,gmm,kde] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

try:
    import scaleflow  # noqa: F401
except ImportError:  # a bare checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from scaleflow.data.prepare import prepare_data
from scaleflow.reference.scoring import score_references


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--priors", default="gaussian,gmm,kde")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        data = prepare_data("builtin", None, size if size < 10_000 else None, 0.1, 0.1, False, 0.95, 0)
        n = min(1000, len(data.test), len(data.train))
        real = data.train[torch.randperm(len(data.train), generator=torch.Generator().manual_seed(1))[:n]]
        for prior in args.priors.split(","):
            began = time.perf_counter()
            result = score_references(data.train, data.val, data.test, real, data.standardizer.inverse_transform,
                                      0, 5, (prior,), cache=False)
            seconds = time.perf_counter() - began
            scored = result["priors"][prior]
            rows.append({"n_train": len(data.train), "prior": prior, "seconds": round(seconds, 2),
                         "fit_seconds": round(scored.get("fit_seconds", float("nan")), 2),
                         "chosen": scored.get("chosen"), "worst_ratio": scored.get("worst_ratio"),
                         "binding": scored.get("binding")})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
