"""One training per run folder: an exclusive `flock` on `RUN/.lock` (`storage.folder_lock`, which says
why a lock is never stale and what happens without file locks)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from scaleflow.storage import folder_lock as locks
from scaleflow.storage.folder_lock import LOCK_FILE, FolderBusy, folder_lock
from scaleflow.training.config import ConfigError

__all__ = ["LOCK_FILE", "RunFolderBusy", "check_not_busy", "run_lock"]


class RunFolderBusy(FolderBusy, ConfigError):
    """Another process is training into the run folder."""

    doing = "another training is writing this run folder"
    advice = "wait for it to finish or stop it, or choose another --out"


def check_not_busy(run_dir: str | Path) -> None:
    """Refuse at once when another process holds `run_dir`'s lock; creates and changes nothing.

    Raises:
        RunFolderBusy: one line naming the folder and the holder (pid, host, start time).
    """
    locks.check_not_busy(run_dir, RunFolderBusy)


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold `run_dir` (created if needed) for this process until the block ends; re-entrant (reflow holds
    its folder while it writes the pairs, and `train` takes it again).

    Raises:
        RunFolderBusy: another process holds it.
    """
    with folder_lock(run_dir, RunFolderBusy):
        yield
