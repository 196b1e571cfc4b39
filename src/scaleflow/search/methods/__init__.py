"""Search methods, one file per family; each registers itself in `METHODS` under its `--method` name."""
from __future__ import annotations

from typing import Any, Mapping

from scaleflow.search.methods import cmaes, latent_bo, prior, raw_bo, real_rows, turbo  # noqa: F401  (registration)
from scaleflow.search.methods.base import METHODS, History, Proposal, SearchMethod


def build_method(name: str, settings: Mapping[str, Any]) -> SearchMethod:
    """Method `name` with the options a search folder's settings (`search.json`, as `scaleflow optimize` and
    ask/tell write them) give it; settings a method does not take are ignored, missing ones take defaults."""
    from scaleflow.search.guidance import GuidanceConfig

    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    get = lambda key, default=None: settings.get(key, default)  # noqa: E731
    sampler = {k: settings[k] for k in ("steps", "noise_scale") if k in settings}
    filtered = {k: settings[k] for k in ("oversample",) if k in settings}
    guided = {**sampler, **filtered, **{k: settings[k] for k in ("acquisition", "pca", "diversity", "refit_every")
                                        if k in settings}}
    if "gp_warm_start" in settings:  # absent: the default (a folder's reader says when its folder predates it)
        guided["warm_start"] = bool(settings["gp_warm_start"])
    if get("guidance") is not None:
        guided["guidance"] = GuidanceConfig(**settings["guidance"])
    if "diversity_cosine" in settings:  # absent: the default; None: the mean-cosine form of earlier searches
        guided["diversity_cosine"] = settings["diversity_cosine"]
    if "max_batch_cosine" in settings:  # absent: the default (a folder's reader says when its folder predates it)
        guided["max_batch_cosine"] = float(settings["max_batch_cosine"])
    if get("density_weight"):
        guided["density_weight"] = settings["density_weight"]
    if get("restart_share"):  # absent or 0: no restarts (`search.restarts`)
        guided["restart_share"] = float(settings["restart_share"])
        guided["restart_time"] = float(get("restart_time", prior.SEARCH_RESTART_TIME))
    options = {
        "guided": guided,
        "prior-filtered": {k: v for k, v in guided.items() if k in ("acquisition", "pca", "oversample", "steps",
                                                                     "noise_scale", "refit_every", "warm_start",
                                                                     "max_batch_cosine")},
        "prior": sampler,
        "bo": filtered,
        "turbo": {**filtered, **({"length_init": settings["turbo_length"]} if "turbo_length" in settings else {})},
        "cmaes": {**filtered, **({"sigma0": settings["cmaes_sigma"]} if "cmaes_sigma" in settings else {})},
        "latent-bo": {**filtered, **({"local_scale": settings["latent_scale"]} if "latent_scale" in settings else {})},
    }
    return METHODS[name](**options.get(name, {}))


__all__ = ["METHODS", "History", "Proposal", "SearchMethod", "build_method"]
