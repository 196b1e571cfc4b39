"""Search methods, one file per family; each registers itself in `METHODS` under its `--method` name."""
from scaleflow.search.methods import cmaes, latent_bo, prior, raw_bo, real_rows, turbo  # noqa: F401  (registration)
from scaleflow.search.methods.base import METHODS, History, Proposal, SearchMethod

__all__ = ["METHODS", "History", "Proposal", "SearchMethod"]
