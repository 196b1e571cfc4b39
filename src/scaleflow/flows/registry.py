"""Flows by name, so configs and the CLI can pick one with a string."""
from __future__ import annotations

from typing import Any

from scaleflow.flows.base import Flow
from scaleflow.flows.icfm import ICFM
from scaleflow.flows.otcfm import OTCFM
from scaleflow.flows.reflow import Reflow
from scaleflow.flows.stochastic_interpolant import SIGVP

FLOWS: dict[str, type[Flow]] = {"icfm": ICFM, "otcfm": OTCFM, "si-gvp": SIGVP, "reflow": Reflow}


def create_flow(name: str, **kwargs: Any) -> Flow:
    """Instantiate the flow registered as `name` with constructor kwargs (e.g. `sigma=0.1`)."""
    try:
        cls = FLOWS[name]
    except KeyError:
        raise ValueError(f"unknown flow {name!r}; known: {', '.join(sorted(FLOWS))}") from None
    return cls(**kwargs)
