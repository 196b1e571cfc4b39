"""Test helpers for folder locks: another process holding a folder's lock, and a check that nobody holds it.
Imported by tests of storage, sweeps, search and the CLI (this folder is on the path through its conftest)."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from scaleflow.storage import folder_lock as locks

# The holder loads the storage module by path: no torch to import, so it starts fast.
HOLD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("folder_lock", sys.argv[1])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
with lock.folder_lock(sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def held_by_another_process(folder: str | Path) -> Iterator[subprocess.Popen]:
    """Another process holds `folder`'s lock inside the block (its pid: `.pid`); it is killed (-9) after."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, locks.__file__, str(folder)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()  # kill -9: no handler runs, the lock goes with the process
        process.communicate(timeout=30)


def someone_else_can_lock(folder: str | Path) -> bool:
    """Whether another open file could take `folder`'s lock now (a second open stands for another process)."""
    import fcntl

    fd = os.open(Path(folder) / locks.LOCK_FILE, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
