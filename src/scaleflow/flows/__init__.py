"""Probability paths from noise (t=0) to data (t=1) and how noise and data are paired."""
from scaleflow.flows.base import Flow, PathSample
from scaleflow.flows.icfm import ICFM
from scaleflow.flows.otcfm import OTCFM
from scaleflow.flows.reflow import Reflow
from scaleflow.flows.registry import FLOWS, create_flow
from scaleflow.flows.stochastic_interpolant import SIGVP
from scaleflow.flows.time_sampling import TimeSampler, make_time_sampler

__all__ = ["FLOWS", "ICFM", "OTCFM", "SIGVP", "Flow", "PathSample", "Reflow", "TimeSampler", "create_flow", "make_time_sampler"]
