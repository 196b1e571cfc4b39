"""An append-only JSON-lines file (a sweep's `results.jsonl`, a search's `search.jsonl`): one record a line.

Records go in whole lines, fsync'd before `append_many` returns, so a writer killed at any moment
(kill -9, a power cut) loses at most the lines it was writing; the first append, which creates the
file, also fsyncs the folder, or a power cut could lose the file's very name. Readers need no lock
and ignore a torn last line (no newline yet).

Writers append under the folder's lock (`folder_lock`, re-entrant: free inside a sweep or search,
which hold it for their whole life), so only one process ever writes a ledger. That is what makes
the torn-tail repair safe: before appending, a tail without a newline is cut, else the new line
would be glued onto it and both lost; under the lock such a tail can only be left by a writer that
died mid-write, never a line another writer is still writing. The file is also opened O_APPEND, so
even a writer without locks (a platform without `fcntl`) adds at the end rather than over a line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from scaleflow.files import UnreadableRunFile
from scaleflow.storage.folder_lock import FolderBusy, folder_lock

_CHUNK = 1 << 16  # bytes read at a time when looking back for the last newline


class Ledger:
    """The records of `folder/filename`, in write order."""

    def __init__(self, folder: str | Path, filename: str, busy: type[FolderBusy] = FolderBusy):
        """`busy`: the error a write raises when another process holds the folder's lock."""
        self.folder = Path(folder)
        self.path = self.folder / filename
        self.busy = busy

    def records(self) -> list[dict[str, Any]]:
        """Every whole record in write order; a torn last line (a kill mid-write) is ignored.

        Raises:
            UnreadableRunFile: a whole line that is not a JSON object (the file was edited or damaged).
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for number, line in enumerate(data[:data.rfind(b"\n") + 1].splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise UnreadableRunFile(f"{self.path}: line {number} is not a JSON record ({err}); "
                                        "the file was edited or damaged") from None
            out.append(record)
        return out

    def append(self, record: dict[str, Any]) -> None:
        """Add one record as one line, on the disk before this returns."""
        self.append_many([record])

    def append_many(self, records: list[dict[str, Any]]) -> None:
        """Add records as lines, in one write, on the disk before this returns.

        Raises:
            TypeError, ValueError: a record is not JSON (then nothing is written).
            FolderBusy (`busy`): another process holds the folder's lock.
        """
        data = "".join(json.dumps(record) + "\n" for record in records).encode()
        with folder_lock(self.folder, self.busy):
            try:
                fd, created = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                fd, created = os.open(self.path, os.O_WRONLY | os.O_APPEND), False
            try:
                whole = _whole_length(self.path)
                if os.fstat(fd).st_size > whole:
                    os.ftruncate(fd, whole)  # a dead writer's torn tail (see the module docstring)
                view = memoryview(data)
                while view:  # a write may be short (a signal, a full pipe of a network mount)
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_folder(self.folder)


def _whole_length(path: Path) -> int:
    """The byte length of `path`'s whole lines: up to and including its last newline."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - _CHUNK)
            f.seek(start)
            at = f.read(end - start).rfind(b"\n")
            if at >= 0:
                return start + at + 1
            end = start
    return 0


def _fsync_folder(folder: Path) -> None:
    """Flush the folder's entries (the new file's name) to the disk; best effort where a file system cannot."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
