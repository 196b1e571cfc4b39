"""Atomic file writes: a temporary name in the same folder, then a rename."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` then rename onto `path`: readers never see a half-written file,
    and a failed write leaves neither a partial file nor the temporary one."""
    path = Path(path)
    check_writable_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp (and some writers) make 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable_file(path: str | Path, option: str | None = None) -> None:
    """Refuse a file path that cannot be written (a folder, or a path under a file), naming `option`
    when given; commands call it before any work, `atomic_write` before every write."""
    path = Path(path)
    where = f"{option} {path}" if option else f"{path}"
    if path.is_dir():
        raise IsADirectoryError(f"{where}: is a folder; give a file name to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"{where}: {parent} is a file, not a folder")
            break
