"""Rectified flow (Liu et al., 2023): the straight path, trained on fixed (noise, sample) pairs."""
from __future__ import annotations

from scaleflow.flows.icfm import ICFM


class Reflow(ICFM):
    """ICFM's straight path whose coupling is given: pairs `(x0, x1)` where x1 is the ODE sample of a
    trained model started from x0 (`scaleflow reflow RUN` makes them). Training on them straightens
    trajectories, so fewer solver steps are needed. The default `couple` keeps the pairs as given.
    """

    name = "reflow"
