"""Stopping a run cleanly on SIGTERM (what clusters send before preempting a job) and SIGINT (Ctrl-C).

The handler only records the signal; the trainer finishes the step it is in, writes a checkpoint at
that step and raises `TrainingInterrupted`. A second signal acts at once, as it would have without
us (the handlers in place before are restored by the first), for a user who will not wait.
"""
from __future__ import annotations

import shlex
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing its checkpoint; the message says where and how to go on.

    Attributes:
        signum: the signal received; shells report such an exit as 128 + signum.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class StopRequest:
    """Set by a signal handler: `signum` is the first stop signal received, or None."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def interrupted(self, step: int, steps: int, checkpoint: Path, run_dir: Path) -> TrainingInterrupted:
        """The error to raise once the checkpoint of `step` is written."""
        name = signal.Signals(self.signum).name
        return TrainingInterrupted(
            f"{name} received: stopped at step {step} of {steps} with a checkpoint in {checkpoint}; continue with: "
            f"scaleflow train --resume --out {shlex.quote(str(run_dir))}", self.signum)


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, SIGTERM and SIGINT set the yielded `StopRequest` instead of stopping the process.

    Handlers can only be installed from the main thread; elsewhere the request is never set.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)

    def record(signum: int, frame) -> None:
        request.signum = request.signum or signum
        restore()

    for s in STOP_SIGNALS:
        signal.signal(s, record)
    try:
        yield request
    finally:
        restore()
