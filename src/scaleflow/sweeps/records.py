"""A sweep's results: one JSON line per trial outcome in `results.jsonl` (a `storage.Ledger`), keyed by a
hash of the trial's options.

This module imports nothing of `sweeps`, so the spec, the tasks and the ledger can all use `canonical`
and `trial_id` without an import circle. `done_ids` is what a rerun skips: "ok" and "failed" records;
a "died" record (the trial's process was killed: OOM, kill -9, a lost node) is retried.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from scaleflow.storage.folder_lock import FolderBusy
from scaleflow.storage.ledger import Ledger
from scaleflow.training.config import ConfigError

RESULTS_FILE = "results.jsonl"
DONE = ("ok", "failed")  # a failed trial is a result too (a config that diverges); rerunning it would fail again


def canonical(value: Any) -> str:
    """A value's canonical JSON: equal for equal values whatever their key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def trial_id(options: dict[str, Any]) -> str:
    """A short stable id for a trial's options (12 hex characters; key order does not matter)."""
    return hashlib.sha256(canonical(options).encode()).hexdigest()[:12]


class SweepFolderBusy(FolderBusy, ConfigError):
    """Another process is running a sweep into the folder (it holds `FOLDER/.lock`)."""

    doing = "another sweep is writing this folder"
    advice = "wait for it to finish or stop it, or choose another --out"


class ResultStore(Ledger):
    """The records in `folder/results.jsonl` (or another file name: searches keep `search.jsonl`, and
    should use `storage.Ledger` itself)."""

    def __init__(self, folder: str | Path, filename: str = RESULTS_FILE):
        super().__init__(folder, filename, SweepFolderBusy)

    def done_ids(self) -> set[str]:
        """Ids of trials that have a finished ("ok" or "failed") record."""
        return {r["id"] for r in self.records() if r.get("status") in DONE and "id" in r}
