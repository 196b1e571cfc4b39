"""What every runner shares: a sweep folder's lock and spec check, the trials still to run, and one way to
record a trial's outcome. The runners differ only in where a trial runs.

A trial ends in one of three records (one JSON line each, the latest of a trial wins):

- `ok` with its result, or `failed` with its error (the trial raised): final, a rerun skips them;
- `died` with its error and `attempt` k: its process was killed from outside (the OOM killer, kill -9,
  SIGTERM outside training, a lost Ray worker or node). Not the trial's own doing, so a rerun retries
  it (resuming its checkpoint); its `MAX_DEATHS`-th death is recorded `failed` instead ("died 3 times"),
  since a trial that kills its process every time (it needs more memory than there is) would otherwise
  be retried forever.
"""
from __future__ import annotations

import json
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Optional

from scaleflow.files import read_json, write_json
from scaleflow.storage.folder_lock import folder_lock
from scaleflow.sweeps.design import expand
from scaleflow.sweeps.records import DONE, ResultStore, SweepFolderBusy, trial_id
from scaleflow.sweeps.spec import SweepSpec
from scaleflow.training.config import ConfigError

Progress = Callable[[dict[str, Any], int, int], None]
MAX_DEATHS = 3  # a trial whose process is killed this many times is recorded failed, not retried again
DIED = "died"


def one_line(err: BaseException) -> str:
    """An error as one short line: `Type: message`."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]


class SweepLedger:
    """A sweep folder's bookkeeping: its lock, `spec.json`, `results.jsonl`, and what is left to run.

    Holds the folder's lock (`FOLDER/.lock`) from construction until `close()` (or the end of a `with`
    block), so a second sweep into the folder is refused instead of running the same trials twice.
    """

    def __init__(self, spec: SweepSpec, folder: str | Path, progress: Optional[Progress] = None):
        """Raises ConfigError when `folder` holds a different sweep's spec.json, and `SweepFolderBusy`
        (a ConfigError: one line naming the folder and the holder) when another process is writing it."""
        self.folder = Path(folder)
        self.progress = progress
        self.trials = [(trial_id(options), options) for options in expand(spec)]
        self._hold = ExitStack()
        self._hold.enter_context(folder_lock(self.folder, SweepFolderBusy))  # before reading what is done
        try:
            self._check_spec(spec)
            self.store = ResultStore(self.folder)
            records = self.store.records()
        except BaseException:
            self.close()
            raise
        done = {r["id"] for r in records if r.get("status") in DONE}
        self.deaths = Counter(r["id"] for r in records if r.get("status") == DIED)
        self.pending = [(tid, options) for tid, options in self.trials if tid not in done]
        self.n_done = len(self.trials) - len(self.pending)

    def _check_spec(self, spec: SweepSpec) -> None:
        spec_file = self.folder / "spec.json"
        saved = json.loads(json.dumps(spec.model_dump(mode="json")))
        if spec_file.exists():
            # Mixing two sweeps in one results file would make the plots lie about what was run.
            try:  # through the model: a spec saved before a field was added still matches
                same = SweepSpec(**read_json(spec_file)).model_dump(mode="json") == saved
            except ValueError:
                same = False
            if not same:
                raise ConfigError(f"{self.folder}: holds a different sweep (spec.json differs); use a new folder")
        else:
            write_json(spec_file, saved)

    def close(self) -> None:
        """Release the folder's lock (the records stay readable)."""
        self._hold.close()

    def __enter__(self) -> "SweepLedger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def finish(self, tid: str, options: dict[str, Any], result: Any = None, error: Optional[str] = None,
               seconds: float = 0.0, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Record one finished trial: `ok` with its result, or `failed` with its error (one line)."""
        record: dict[str, Any] = {"id": tid, "config": options}
        if error is None:
            try:
                json.dumps(result)
                record.update(status="ok", result=result)
            except (TypeError, ValueError) as err:  # an unrecordable result is this trial's failure
                error = f"result is not JSON: {one_line(err)}"
        if error is not None:
            record.update(status="failed", error=error)
        record["seconds"] = round(seconds, 3)
        record.update(extra or {})
        self.store.append(record)
        self.n_done += 1
        if self.progress is not None:
            self.progress(record, self.n_done, len(self.trials))
        return record

    def died(self, tid: str, options: dict[str, Any], error: str, seconds: float = 0.0) -> dict[str, Any]:
        """Record a trial whose process was killed from outside: `died` with `attempt` k (a rerun retries
        it), or `failed` at its `MAX_DEATHS`-th death. `progress` sees the record either way; only a
        failure counts as done."""
        self.deaths[tid] += 1
        attempt = self.deaths[tid]
        if attempt >= MAX_DEATHS:
            return self.finish(tid, options, error=f"{error}; died {attempt} times, not retried again",
                               seconds=seconds, extra={"attempt": attempt})
        record = {"id": tid, "config": options, "status": DIED, "attempt": attempt,
                  "error": f"{error}; attempt {attempt} of {MAX_DEATHS}: a rerun retries it",
                  "seconds": round(seconds, 3)}
        self.store.append(record)
        if self.progress is not None:
            self.progress(record, self.n_done, len(self.trials))
        return record

    def records(self) -> list[dict[str, Any]]:
        """This sweep's latest record of each trial that has one, in design order: `ok`, `failed`, or
        `died` (to be retried by a rerun)."""
        latest = {r["id"]: r for r in self.store.records() if r.get("status") in (*DONE, DIED)}
        return [latest[tid] for tid, _ in self.trials if tid in latest]
