"""A sweep's results: one JSON line per finished trial in `results.jsonl`, keyed by a hash of its options.

The file only grows, one whole line per trial, fsync'd, so a sweep killed at any moment loses at
most the trial it was writing; `done_ids` is what a rerun skips.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from scaleflow.files import UnreadableRunFile
from scaleflow.sweeps.spec import canonical

DONE = ("ok", "failed")  # a failed trial is a result too (a config that diverges); rerunning it would fail again


def trial_id(options: dict[str, Any]) -> str:
    """A short stable id for a trial's options (12 hex characters; key order does not matter)."""
    return hashlib.sha256(canonical(options).encode()).hexdigest()[:12]


class ResultStore:
    """The records in `folder/results.jsonl` (or another file name: searches keep `search.jsonl`)."""

    def __init__(self, folder: str | Path, filename: str = "results.jsonl"):
        self.folder = Path(folder)
        self.path = self.folder / filename

    def _lines(self) -> tuple[list[bytes], int]:
        """Whole lines, and the byte length they cover (a torn tail after it has no newline)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        end = data.rfind(b"\n") + 1
        return data[:end].splitlines(), end

    def records(self) -> list[dict[str, Any]]:
        """Every whole record in write order; a torn last line (a kill mid-write) is ignored."""
        out = []
        lines, _ = self._lines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise UnreadableRunFile(f"{self.path}: line {number} is not a JSON record ({err}); "
                                        "the results file was edited or damaged") from None
            out.append(record)
        return out

    def done_ids(self) -> set[str]:
        """Ids of trials that have a finished ("ok" or "failed") record."""
        return {r["id"] for r in self.records() if r.get("status") in DONE and "id" in r}

    def append(self, record: dict[str, Any]) -> None:
        """Add one record as one line, on the disk before this returns."""
        self.append_many([record])

    def append_many(self, records: list[dict[str, Any]]) -> None:
        """Add records as lines, in one write, on the disk before this returns."""
        line = "".join(json.dumps(record) + "\n" for record in records).encode()  # a bad record writes nothing
        self.folder.mkdir(parents=True, exist_ok=True)
        _, whole = self._lines()
        with open(self.path, "ab") as f:
            # Cut a torn tail first, else this line would be glued onto it and both lost.
            if f.tell() > whole:
                f.truncate(whole)
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
