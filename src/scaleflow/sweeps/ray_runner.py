"""Run a sweep's trials as Ray tasks: on a local Ray (started here) or an existing cluster
(`address="auto"`). Same ledger, same records as the local runner; each task asks for its CPUs and
GPU fraction and runs in a fresh worker process. On a cluster the sweep folder must be on storage
every node sees (the trials write their run folders there)."""
from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any, Optional

from scaleflow.sweeps.ledger import Progress, SweepLedger, one_line
from scaleflow.sweeps.local import Trial
from scaleflow.sweeps.spec import SweepSpec
from scaleflow.training.config import ConfigError
from scaleflow.training.signals import TrainingInterrupted


def require_ray():
    """The ray module, or a ConfigError saying which extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray: Ray is not installed; install the extra: pip install 'scaleflow[ray]'") from None
    return ray


def _trial_in_ray(run_trial: Trial, options: dict[str, Any], threads: int) -> tuple[dict[str, Any], float]:
    """One trial inside a Ray worker: its result and the worker's peak memory (MiB)."""
    import torch

    torch.set_num_threads(threads)
    result = run_trial(options)
    return result, round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _error_line(err: BaseException) -> str:
    """A Ray error as the trial's own one-line error (a task error wraps the trial's exception)."""
    cause = getattr(err, "cause", None)
    return one_line(cause) if isinstance(cause, BaseException) else one_line(err)


def run_sweep_ray(spec: SweepSpec, folder: str | Path, run_trial: Trial, progress: Optional[Progress] = None,
                  address: Optional[str] = None, cpus_per_trial: float = 1, gpus_per_trial: float = 0,
                  num_cpus: Optional[int] = None) -> list[dict[str, Any]]:
    """Run every trial of `spec` not yet recorded in `folder` as Ray tasks (see `local.run_sweep` for
    the records and the resume rule).

    Args:
        address: None starts a local Ray for this sweep (`num_cpus` CPUs, default all); "auto" or
            "ray://host:port" joins an existing cluster, which is left running.
        cpus_per_trial: CPUs each task asks for; its torch threads are that many (at least 1).
        gpus_per_trial: GPU fraction each task asks for (0.5: two trials share a GPU).
    """
    ray = require_ray()
    ledger = SweepLedger(spec, folder, progress)
    if not ledger.pending:
        return ledger.records()
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if address is None:
            kwargs["num_cpus"] = num_cpus
        ray.init(address=address, **kwargs)
    # max_calls=1: a fresh worker per trial, so its peak memory is its own and no state leaks across.
    task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_calls=1, max_retries=0)(_trial_in_ray)
    threads = max(1, int(cpus_per_trial))
    running: dict[Any, tuple[str, dict[str, Any], float]] = {}
    try:
        for tid, options in ledger.pending:
            running[task.remote(run_trial, dict(options), threads)] = (tid, options, time.perf_counter())
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            tid, options, start = running.pop(ref)
            try:
                result, peak = ray.get(ref)
                ledger.finish(tid, options, result, seconds=time.perf_counter() - start, extra={"peak_rss_mb": peak})
            except ray.exceptions.RayError as err:  # the trial raised, or its worker died
                if isinstance(getattr(err, "cause", None), (KeyboardInterrupt, TrainingInterrupted)):
                    continue  # stopped (preempted), not failed: unrecorded, so it runs again next time
                ledger.finish(tid, options, error=_error_line(err), seconds=time.perf_counter() - start)
    finally:
        for ref in running:  # interrupted: unrecorded trials run again next time
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
    return ledger.records()
