"""One training per run folder: an exclusive `flock` on `RUN/.lock`.

The operating system drops the lock when its holder exits, however it dies (kill -9 included), so a
lock is never stale; the file itself stays (deleting a lock file races with a process about to take
it) and only says who holds it. Platforms without `fcntl`, and file systems without locks (some network
mounts), train unlocked, with a warning.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from scaleflow.training.config import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_FILE = ".lock"
logger = logging.getLogger(__name__)
# Folders this process holds: how many nested `run_lock`s hold each, and the open file holding the lock
# (None without file locks). Re-entrant, because reflow holds its folder while it writes the pairs and
# `train` takes it again (flock locks belong to an open file: a second open by this process would be refused).
_held: dict[Path, list] = {}


class RunFolderBusy(ConfigError):
    """Another process is training into the run folder."""


def _busy(run_dir: Path) -> RunFolderBusy:
    try:
        holder = (run_dir / LOCK_FILE).read_text().strip() or "another process"
    except OSError:
        holder = "another process"
    return RunFolderBusy(f"{run_dir}: another training is writing this run folder ({holder}); "
                         "wait for it to finish or stop it, or choose another --out")


def check_not_busy(run_dir: str | Path) -> None:
    """Refuse at once when another process holds `run_dir`'s lock; creates and changes nothing.

    Raises:
        RunFolderBusy: one line naming the folder and the holder (pid, host, start time).
    """
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    if fcntl is None or run_dir.resolve() in _held or not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(run_dir) from None
    except OSError:
        pass  # no locks on this file system: `run_lock` says so
    finally:
        os.close(fd)  # also releases the shared lock taken to look


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold `run_dir` (created if needed) for this process until the block ends.

    Raises:
        RunFolderBusy: another process holds it.
    """
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if key not in _held:
        _held[key] = [0, _acquire(run_dir)]
    _held[key][0] += 1
    try:
        yield
    finally:
        _held[key][0] -= 1
        if not _held[key][0]:
            fd = _held.pop(key)[1]
            if fd is not None:
                os.close(fd)  # releases the lock


def _acquire(run_dir: Path) -> Optional[int]:
    """Take `run_dir`'s lock: the open file holding it, or None where there are no file locks."""
    if fcntl is None:
        logger.warning("%s: this platform has no file locks; a second training into it would not be refused", run_dir)
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _busy(run_dir) from None
    except OSError as err:
        logger.warning("%s: cannot be locked (%s); a second training into it would not be refused",
                       run_dir, err.strerror or err)
    try:  # who holds it: information only, so a full disk here does not stop the run
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    except OSError:
        pass
    return fd
