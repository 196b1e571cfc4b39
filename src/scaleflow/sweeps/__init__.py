"""Sweeps: a YAML matrix of options, expanded into trials, run and recorded so a killed sweep resumes."""
from scaleflow.sweeps.design import expand
from scaleflow.sweeps.local import run_sweep
from scaleflow.sweeps.records import ResultStore, trial_id
from scaleflow.sweeps.spec import SweepSpec, load_sweep

__all__ = ["SweepSpec", "load_sweep", "expand", "trial_id", "ResultStore", "run_sweep"]
