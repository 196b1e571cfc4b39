"""Run a sweep's trials as Ray tasks: on a local Ray (started here) or an existing cluster
(`address="auto"`). Same ledger, same records as the local runner; each task asks for its CPUs and
GPU fraction and runs in a fresh worker process. On a cluster the sweep folder must be on storage
every node sees (the trials write their run folders there).

A task whose worker or node is lost is retried by Ray (`SYSTEM_RETRIES` times, resuming its checkpoint);
lost again, it is recorded `died`, which a rerun retries (see `ledger`). A trial's own exception is
never retried: it is the trial's result. Ctrl-C cancels the tasks as the local runner stops its workers:
Ray raises KeyboardInterrupt in each, which a training turns into a checkpoint; after `EXIT_SECONDS`
whatever still runs is killed."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from scaleflow.sweeps.environment import peak_rss_mb
from scaleflow.sweeps.ledger import Progress, SweepLedger, one_line
from scaleflow.sweeps.local import EXIT_SECONDS, Trial
from scaleflow.sweeps.spec import SweepSpec
from scaleflow.training.config import ConfigError
from scaleflow.training.signals import TrainingInterrupted

SYSTEM_RETRIES = 3  # Ray's retries of a task whose worker or node died (not of the trial's own exceptions)
# What a lost worker or node raises (after Ray's retries): the trial did not fail, its process was killed.
LOST = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "LocalRayletDiedError", "ObjectLostError")


def require_ray():
    """The ray module, or a ConfigError saying which extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray: Ray is not installed; install the extra: pip install 'scaleflow[ray]'") from None
    return ray


def _trial_in_ray(run_trial: Trial, options: dict[str, Any], threads: int) -> tuple[dict[str, Any], Optional[float]]:
    """One trial inside a Ray worker: its result and the worker's peak memory (MiB)."""
    import torch

    torch.set_num_threads(threads)
    result = run_trial(options)
    return result, peak_rss_mb()


def _error_line(err: BaseException) -> str:
    """A Ray error as the trial's own one-line error (a task error wraps the trial's exception)."""
    cause = getattr(err, "cause", None)
    return one_line(cause) if isinstance(cause, BaseException) else one_line(err)


def _is_lost(ray, err: BaseException) -> bool:
    """Whether a Ray error says the trial's worker or node was lost (OOM, a killed worker, a dead node)."""
    return isinstance(err, tuple(getattr(ray.exceptions, name) for name in LOST if hasattr(ray.exceptions, name)))


def _record(ray, ledger: SweepLedger, ref, tid: str, options: dict[str, Any], start: float) -> None:
    """Record a finished task: ok, failed (the trial raised), died (its worker was lost), or nothing
    (stopped: it runs again next time)."""
    seconds = time.perf_counter() - start
    try:
        result, peak = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return  # cancelled by our Ctrl-C: unrecorded, so it runs again next time
    except ray.exceptions.RayError as err:  # the trial raised, or its worker died
        if isinstance(getattr(err, "cause", None), (KeyboardInterrupt, TrainingInterrupted)):
            return  # stopped (preempted), not failed: unrecorded, so it runs again next time
        if _is_lost(ray, err):
            ledger.died(tid, options, _error_line(err), seconds)
        else:
            ledger.finish(tid, options, error=_error_line(err), seconds=seconds)
        return
    ledger.finish(tid, options, result, seconds=seconds, extra={"peak_rss_mb": peak})


def _stop(ray, ledger: SweepLedger, running: dict) -> None:
    """Ctrl-C: ask every task to stop (KeyboardInterrupt in it: a training checkpoints), wait up to
    `EXIT_SECONDS` for them, and record those that finished meanwhile."""
    if not running:
        return
    for ref in running:
        ray.cancel(ref, force=False)
    ready, _ = ray.wait(list(running), num_returns=len(running), timeout=EXIT_SECONDS)
    for ref in ready:
        _record(ray, ledger, ref, *running.pop(ref))


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
    with SweepLedger(spec, folder, progress) as ledger:  # holds the folder: a second sweep into it is refused
        if ledger.pending:
            _run(ray, ledger, run_trial, address, cpus_per_trial, gpus_per_trial, num_cpus)
    return ledger.records()


def _run(ray, ledger: SweepLedger, run_trial: Trial, address: Optional[str], cpus_per_trial: float,
         gpus_per_trial: float, num_cpus: Optional[int]) -> None:
    """Start (or join) Ray, run `ledger.pending` as tasks and record each as it ends."""
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if address is None:
            # Tasks killed by Ray's memory monitor are retried without end by default, not by max_retries: cap
            # them the same, so a trial that always runs out of memory ends as a death, then a failure. (On a
            # cluster, the same cap is the RAY_task_oom_retries environment variable of its nodes.)
            kwargs.update(num_cpus=num_cpus, _system_config={"task_oom_retries": SYSTEM_RETRIES})
        ray.init(address=address, **kwargs)
    # max_calls=1: a fresh worker per trial, so its peak memory is its own and no state leaks across.
    task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_calls=1, max_retries=SYSTEM_RETRIES,
                      retry_exceptions=False)(_trial_in_ray)
    threads = max(1, int(cpus_per_trial))
    running: dict[Any, tuple[str, dict[str, Any], float]] = {}
    try:
        for tid, options in ledger.pending:
            running[task.remote(run_trial, dict(options), threads)] = (tid, options, time.perf_counter())
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            _record(ray, ledger, ref, *running.pop(ref))
    except KeyboardInterrupt:
        _stop(ray, ledger, running)
        raise
    finally:
        for ref in running:  # still running after the grace period: unrecorded, they run again next time
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
