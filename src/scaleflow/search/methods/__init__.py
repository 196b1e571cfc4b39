"""Search methods, one file per family; each registers itself in `METHODS` under its `--method` name."""
from scaleflow.search.methods import prior, real_rows  # noqa: F401  (registration)
from scaleflow.search.methods.base import METHODS, History, Proposal, SearchMethod

__all__ = ["METHODS", "History", "Proposal", "SearchMethod"]
