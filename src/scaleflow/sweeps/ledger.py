"""What every runner shares: a sweep folder's spec check, the trials still to run, and one way to
record a finished trial. The runners differ only in where a trial runs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

from scaleflow.files import read_json, write_json
from scaleflow.sweeps.design import expand
from scaleflow.sweeps.records import ResultStore, trial_id
from scaleflow.sweeps.spec import SweepSpec
from scaleflow.training.config import ConfigError

Progress = Callable[[dict[str, Any], int, int], None]


def one_line(err: BaseException) -> str:
    """An error as one short line: `Type: message`."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]


class SweepLedger:
    """A sweep folder's bookkeeping: `spec.json`, `results.jsonl`, and what is left to run."""

    def __init__(self, spec: SweepSpec, folder: str | Path, progress: Optional[Progress] = None):
        """Raises ConfigError when `folder` holds a different sweep's spec.json."""
        self.folder = Path(folder)
        self.progress = progress
        trials = expand(spec)
        self.trials = [(trial_id(options), options) for options in trials]
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
        self.store = ResultStore(self.folder)
        done = self.store.done_ids()
        self.pending = [(tid, options) for tid, options in self.trials if tid not in done]
        self.n_done = len(self.trials) - len(self.pending)

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

    def records(self) -> list[dict[str, Any]]:
        """This sweep's finished records, in design order (the latest record of each trial)."""
        latest = {r["id"]: r for r in self.store.records() if r.get("status") in ("ok", "failed")}
        return [latest[tid] for tid, _ in self.trials if tid in latest]
