"""One writer per folder: an exclusive `flock` on `FOLDER/.lock`, held for as long as the writer writes.

A run folder (one training), a sweep folder (one sweep) and a search folder (one search) each take it:
a second writer is refused at once with one line naming the folder and the holder. The operating
system drops the lock when its holder exits, however it dies (kill -9 included), so a lock is never
stale; the file itself stays (deleting a lock file races with a process about to take it) and only
says who holds it. Platforms without `fcntl`, and file systems without locks (some network mounts),
write unlocked, with a warning.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_FILE = ".lock"
logger = logging.getLogger(__name__)
# Folders this process holds: how many nested `folder_lock`s hold each, and the open file holding the lock
# (None without file locks). Re-entrant, because one writer nests holds (reflow holds its run folder and
# `train` takes it again; a sweep holds its folder and each ledger append takes it again), and flock locks
# belong to an open file: a second open by this very process would be refused.
_held: dict[Path, list] = {}
_guard = threading.Lock()  # `_held` is shared by every thread of the process
_warned: set[Path] = set()  # folders already warned about (a ledger would warn at every append)


class FolderBusy(ValueError):
    """Another process is writing the folder. Subclasses say who (`doing`) and what to do (`advice`).

    Attributes:
        folder: the folder asked for.
        holder: who holds it ("pid 123 on host since 2025-01-01 12:00:00"), as its lock file says.
    """

    doing = "another process is writing this folder"
    advice = "wait for it to finish or stop it, or choose another folder"

    def __init__(self, folder: str | Path, holder: str = "another process"):
        self.folder, self.holder = Path(folder), holder
        super().__init__(f"{folder}: {self.doing} ({holder}); {self.advice}")

    def __reduce__(self):  # rebuilt from (folder, holder) when sent between processes (Ray, multiprocessing)
        return type(self), (self.folder, self.holder)


def lock_holder(folder: str | Path) -> str:
    """Who holds (or last held) `folder`'s lock, as written in its lock file, or "another process"."""
    try:
        return (Path(folder) / LOCK_FILE).read_text().strip() or "another process"
    except (OSError, UnicodeDecodeError):
        return "another process"


def holds(folder: str | Path) -> bool:
    """Whether this process holds `folder`'s lock (inside a `folder_lock` block)."""
    return Path(folder).resolve() in _held


def check_not_busy(folder: str | Path, busy: type[FolderBusy] = FolderBusy) -> None:
    """Refuse at once when another process holds `folder`'s lock; creates and changes nothing.

    Raises:
        busy: one line naming the folder and the holder (pid, host, start time).
    """
    folder = Path(folder)
    path = folder / LOCK_FILE
    if fcntl is None or holds(folder) or not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise busy(folder, lock_holder(folder)) from None
    except OSError:
        pass  # no locks on this file system: `folder_lock` says so
    finally:
        os.close(fd)  # also releases the shared lock taken to look


@contextmanager
def folder_lock(folder: str | Path, busy: type[FolderBusy] = FolderBusy) -> Iterator[None]:
    """Hold `folder` (created if needed) for this process until the block ends; re-entrant.

    Raises:
        busy: another process holds it (one line: the folder, the holder, what to do).
    """
    folder = Path(folder)
    with _guard:
        key = folder.resolve()
        if key not in _held:
            _held[key] = [0, _acquire(folder, busy)]
        _held[key][0] += 1
    try:
        yield
    finally:
        with _guard:
            _held[key][0] -= 1
            if not _held[key][0]:
                fd = _held.pop(key)[1]
                if fd is not None:
                    os.close(fd)  # releases the lock


def _unlocked(folder: Path, why: str) -> None:
    if folder.resolve() not in _warned:
        _warned.add(folder.resolve())
        logger.warning("%s: %s; a second writer into it would not be refused", folder, why)


def _acquire(folder: Path, busy: type[FolderBusy]) -> Optional[int]:
    """Take `folder`'s lock: the open file holding it, or None where there are no file locks."""
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        _unlocked(folder, "this platform has no file locks")
        return None
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise busy(folder, lock_holder(folder)) from None
    except OSError as err:
        _unlocked(folder, f"cannot be locked ({err.strerror or err})")
    try:  # who holds it: information only, so a full disk here does not stop the writer
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    except OSError:
        pass
    return fd
