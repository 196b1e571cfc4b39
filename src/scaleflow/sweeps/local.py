"""Run a sweep's trials on this machine: one after another in this process, or N at a time, each in a
fresh worker process with its share of the cores. A killed sweep resumes where it stopped."""
from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Optional

from scaleflow.sweeps.environment import peak_rss_mb, usable_cores
from scaleflow.sweeps.ledger import Progress, SweepLedger, one_line
from scaleflow.sweeps.spec import SweepSpec
from scaleflow.training.signals import TrainingInterrupted

Trial = Callable[[dict[str, Any]], dict[str, Any]]
INTERRUPTED = "interrupted"
EXIT_SECONDS = 60  # how long a stopping worker may take to write its checkpoint and exit


def threads_per_job(jobs: int, cores: Optional[int] = None) -> int:
    """The cores each of `jobs` parallel trials gets, so that together they do not oversubscribe
    (on 2 cores an oversubscribed pair of OpenMP pools runs 10-40x slower, measured)."""
    cores = cores or usable_cores()
    return max(1, cores // max(1, jobs))


def _die_with_parent(parent_pid: Optional[int]) -> None:
    """Ask Linux to send this worker SIGTERM when the sweep process dies (even by kill -9), so training
    checkpoints and stops instead of running on, orphaned, holding its run folder's lock. A parent that
    died before the request (while this worker was starting) is caught by its pid."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


class _WarningCollector(logging.Handler):
    """Keeps the trial's warnings (sent back with its result: the sweep shows each distinct one once,
    instead of every worker printing the same line)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)


def _worker(conn, run_trial: Trial, options: dict[str, Any], threads: int, parent_pid: Optional[int] = None) -> None:
    """One trial in its own process; sends (status, result or error or None, peak_rss_mb, warnings),
    status being "ok", "failed" or "interrupted"."""
    _die_with_parent(parent_pid)
    collector = _WarningCollector()
    logging.getLogger("scaleflow").addHandler(collector)
    import torch

    torch.set_num_threads(threads)
    from scaleflow.training.signals import TrainingInterrupted

    try:
        message: tuple = ("ok", run_trial(options))
    except (KeyboardInterrupt, TrainingInterrupted):
        message = (INTERRUPTED, None)
    except Exception as err:
        message = ("failed", one_line(err))
    peak = peak_rss_mb()
    try:
        conn.send((*message, peak, collector.messages))
    except BrokenPipeError:  # the sweep is gone; nothing to tell
        return
    except Exception as err:  # an unpicklable result (PicklingError, AttributeError, TypeError, ...)
        conn.send(("failed", f"result is not recordable: {one_line(err)}", peak, collector.messages))
    conn.close()


def _run_inline(ledger: SweepLedger, run_trial: Trial) -> None:
    for tid, options in ledger.pending:
        start = time.perf_counter()
        try:
            result, error = run_trial(dict(options)), None  # a copy: the trial must not change what is recorded
        except TrainingInterrupted:
            raise  # stopped, not failed: left unrecorded, it runs again (resuming its checkpoint) next time
        except Exception as err:
            result, error = None, one_line(err)
        ledger.finish(tid, options, result, error, time.perf_counter() - start)


def _start(ctx, run_trial: Trial, options: dict[str, Any], threads: int):
    receiver, sender = ctx.Pipe(duplex=False)
    # OpenMP sizes its pool from the environment when torch loads, before set_num_threads runs.
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: str(threads) for k in saved})
    try:
        process = ctx.Process(target=_worker, args=(sender, run_trial, dict(options), threads, os.getpid()),
                              daemon=True)
        process.start()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    sender.close()
    return process, receiver


def _exit_reason(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"WorkerDied: the trial's process was killed by {name}{hint}"
    return f"WorkerDied: the trial's process exited with code {code} without a result"


def _run_processes(ledger: SweepLedger, run_trial: Trial, jobs: int, threads: int) -> None:
    ctx = mp.get_context("spawn")  # fork would copy this process's torch thread pools and locks
    queue = list(ledger.pending)
    running: dict[Any, dict] = {}  # receiver -> {process, tid, options, start, message}
    interrupted = False
    try:
        while queue or running:
            while queue and len(running) < jobs:
                tid, options = queue.pop(0)
                process, receiver = _start(ctx, run_trial, options, threads)
                running[receiver] = {"process": process, "tid": tid, "options": options,
                                     "start": time.perf_counter(), "message": None}
            # A worker sends its result before it exits; read it first, or a big result fills the
            # pipe and the worker never exits.
            for receiver in wait(list(running)):
                job = running.pop(receiver)
                try:
                    job["message"] = receiver.recv()
                except EOFError:
                    pass
                except Exception as err:  # a result this process cannot unpickle: the trial's failure, not the sweep's
                    job["message"] = ("failed", f"result is not readable here: {one_line(err)}", None, [])
                job["process"].join(EXIT_SECONDS)
                if job["process"].is_alive():  # sent its result but hangs on exit
                    job["process"].kill()
                    job["process"].join()
                receiver.close()
                seconds = time.perf_counter() - job["start"]
                message = job["message"]
                if message is None:  # killed from outside (OOM, kill -9): retried by a rerun, up to MAX_DEATHS
                    ledger.died(job["tid"], job["options"], _exit_reason(job["process"]), seconds)
                elif message[0] == INTERRUPTED:
                    interrupted = True  # Ctrl-C reached the workers too; the trial stays unrecorded
                else:
                    status, payload, peak, warnings = message
                    extra = {"peak_rss_mb": peak, **({"warnings": warnings} if warnings else {})}
                    ledger.finish(job["tid"], job["options"], payload if status == "ok" else None,
                                  payload if status == "failed" else None, seconds, extra)
            if interrupted:  # after recording every other result that was ready
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if interrupted:  # Ctrl-C reached the workers too: they are writing their checkpoints; a second
            for job in running.values():  # signal now would kill them mid-write
                job["process"].join(EXIT_SECONDS)
        for job in running.values():  # stopped otherwise: SIGTERM makes each checkpoint, then make sure
            if job["process"].is_alive():
                job["process"].terminate()
        for job in running.values():
            job["process"].join(EXIT_SECONDS)
            if job["process"].is_alive():
                job["process"].kill()
                job["process"].join()


def run_sweep(spec: SweepSpec, folder: str | Path, run_trial: Trial, progress: Optional[Progress] = None,
              jobs: Optional[int] = None, threads: Optional[int] = None) -> list[dict[str, Any]]:
    """Run every trial of `spec` not yet recorded in `folder`.

    Each record is `{"id", "config", "status": "ok", "result", "seconds"}`, or `{..., "status":
    "failed", "error"}` when `run_trial` raises (the sweep goes on), or `{..., "status": "died",
    "error", "attempt"}` when a worker process was killed from outside (see `ledger`: a rerun retries
    it, and its third death is recorded failed). `progress(record, n_done, n_total)` is called after
    each trial that ran. KeyboardInterrupt stops the sweep; rerunning it skips what was recorded, so
    every trial runs to a result exactly once.

    Args:
        jobs: None runs the trials one after another in this process, in design order. N >= 1 runs
            up to N at a time, each in a fresh process (so its record also holds `peak_rss_mb`, the
            trial's own peak memory); `run_trial` must then be picklable (a module-level function
            or an instance such as `tasks.TrainTask`).
        threads: torch threads per worker (default: the cores split evenly over the jobs).

    Returns:
        The records of this sweep's trials, in design order.

    Raises:
        ConfigError: the folder holds a different sweep's spec.json; `records.SweepFolderBusy` (a
            ConfigError) another process is writing the folder.
    """
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1; got {jobs}")
    with SweepLedger(spec, folder, progress) as ledger:  # holds the folder: a second sweep into it is refused
        if jobs is None:
            _run_inline(ledger, run_trial)
        else:
            _run_processes(ledger, run_trial, jobs, threads or threads_per_job(jobs))
    return ledger.records()
