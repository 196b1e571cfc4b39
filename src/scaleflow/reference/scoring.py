"""What a classical model would have done: reference priors fitted to a run's training rows and scored
on the same test rows, real draw and n as the run's own samples, so `eval` can print the best one beside
each floor.

Computed once per (training, validation and test rows, real draw, n, seed, k, priors) and cached as JSON
under `$SCALEFLOW_CACHE/reference/` (default `~/.cache/scaleflow`): every run trained on the same data
file and split reuses it. Samples: the exact sampler where the prior has one (Gaussian, GMM, KDE: what
the model is, without solver error), the ODE otherwise (closed-form). Values are point estimates
(`evaluation.scores.point_scores`): the reference row places the run, the run's own intervals judge it.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable, Optional, Sequence

import torch

from scaleflow.files import cache_root, write_json
from scaleflow.reference.fit import REFERENCE_PRIORS, ReferenceFitError, fit_reference, sample_reference

# The priors `eval` fits by default. closed-form is left out: choosing its smoothing samples the ODE over
# every training row for each candidate (~50 s at 1K rows on one core, ~9x that at 10K); ask for it with
# `eval --reference`, or train it as a run (`scaleflow train --arch closed-form`).
DEFAULT_REFERENCES = ("gaussian", "gmm", "kde")
SCORING_VERSION = 2  # bump when what is scored changes: older cache entries are then ignored


def parse_references(text: str) -> tuple[str, ...]:
    """`"gaussian,kde"` -> ("gaussian", "kde"); "none" or "" -> (); ValueError naming an unknown prior."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"))
    unknown = [n for n in names if n not in REFERENCE_PRIORS]
    if unknown:
        raise ValueError(f"unknown reference prior(s) {', '.join(unknown)}; available: {', '.join(REFERENCE_PRIORS)} "
                         "(or none)")
    return names


def _key(tensors: Sequence[torch.Tensor], settings: dict) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for x in tensors:
        digest.update(str(tuple(x.shape)).encode())
        digest.update(x.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def score_references(train: torch.Tensor, val: torch.Tensor, test: torch.Tensor, real_draw: torch.Tensor,
                     to_original: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, seed: int = 0, k: int = 5,
                     names: Sequence[str] = DEFAULT_REFERENCES, cache: bool = True) -> Optional[dict]:
    """Fit each reference prior in `names` to `train: [T, D]` (settings chosen on `val`), draw as many samples
    as `real_draw: [n, D]` has, score them against `test: [M, D]` beside the real draw's floors.

    Returns None for no names, else `{"priors": {name: {"chosen", "fit_seconds", "sampler", "metrics":
    {measure: value}, "ratios": {term: ratio}, "worst_ratio", "binding"}}, "best": name (highest worst
    ratio), "n", "seed", "cached"}`; a prior that cannot be fitted has `"error"` instead of its scores.
    """
    from scaleflow.evaluation.ranking import ranked_ratios, worst_ratio
    from scaleflow.evaluation.scores import point_scores

    names = tuple(names)
    if not names:
        return None
    n = len(real_draw)
    settings = {"version": SCORING_VERSION, "names": names, "seed": seed, "k": k, "n": n}
    path = cache_root() / "reference" / f"{_key((train, val, test, real_draw), settings)}.json"
    if cache and path.exists():
        try:
            return {**json.loads(path.read_text()), "cached": True}
        except (OSError, ValueError):
            pass  # an unreadable entry is computed again (and rewritten)
    priors: dict[str, dict] = {}
    for name in names:
        try:
            fitted = fit_reference(name, train, val, seed=seed, to_original=to_original)
        except (ReferenceFitError, ValueError, RuntimeError) as err:  # e.g. too few rows for any GMM
            priors[name] = {"error": " ".join(str(err).split())}
            continue
        model = fitted.model
        if hasattr(model, "sample"):
            samples, sampler = model.sample(n, torch.Generator().manual_seed(seed)), "exact"
        else:
            samples, sampler = sample_reference(model, n, seed), "ode (heun, 20 steps)"
        scores = point_scores(samples.to(test.device), test, real_draw, train, to_original, k)
        worst, binding = worst_ratio(scores)
        priors[name] = {"chosen": fitted.chosen, "fit_seconds": fitted.seconds, "sampler": sampler,
                        "metrics": {m: e["value"] for m, e in scores.items()},
                        "ratios": ranked_ratios(scores), "worst_ratio": worst, "binding": binding}
    scored = [name for name in names if priors[name].get("worst_ratio") is not None]
    result = {"priors": priors, "best": max(scored, key=lambda m: priors[m]["worst_ratio"]) if scored else None,
              "n": n, "seed": seed, "names": list(names)}
    if cache:
        try:
            write_json(path, result)
        except OSError:
            pass  # a read-only home still evaluates; it only computes again next time
    return {**result, "cached": False}
