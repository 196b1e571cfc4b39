"""Run a sweep's trials one after another in this process, resuming where a killed run stopped."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

from scaleflow.files import read_json, write_json
from scaleflow.sweeps.design import expand
from scaleflow.sweeps.records import ResultStore, trial_id
from scaleflow.sweeps.spec import SweepSpec
from scaleflow.training.config import ConfigError

Progress = Callable[[dict[str, Any], int, int], None]


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]


def run_sweep(spec: SweepSpec, folder: str | Path, run_trial: Callable[[dict[str, Any]], dict[str, Any]],
              progress: Optional[Progress] = None) -> list[dict[str, Any]]:
    """Run every trial of `spec` not yet recorded in `folder`, in design order.

    Each record is `{"id", "config", "status": "ok", "result", "seconds"}`, or
    `{"id", "config", "status": "failed", "error"}` when `run_trial` raises (the sweep goes on).
    `progress(record, n_done, n_total)` is called after each trial that ran. KeyboardInterrupt
    stops the sweep; rerunning it skips what was recorded, so every trial runs exactly once.

    Returns:
        The records of this sweep's trials, in design order.

    Raises:
        ConfigError: the folder holds a different sweep's spec.json.
    """
    folder = Path(folder)
    trials = expand(spec)
    spec_file = folder / "spec.json"
    saved = spec.model_dump(mode="json")
    if spec_file.exists():
        # Mixing two sweeps in one results file would make the plots lie about what was run.
        if read_json(spec_file) != json.loads(json.dumps(saved)):
            raise ConfigError(f"{folder}: holds a different sweep (spec.json differs); use a new folder")
    else:
        write_json(spec_file, saved)

    store = ResultStore(folder)
    done = store.done_ids()
    ids = [trial_id(options) for options in trials]
    n_done = sum(i in done for i in ids)
    for options, tid in zip(trials, ids):
        if tid in done:
            continue
        start = time.perf_counter()
        try:
            result = run_trial(dict(options))  # a copy: the trial must not change what is recorded
            json.dumps(result)  # an unrecordable result is this trial's failure, not the sweep's
            record = {"id": tid, "config": options, "status": "ok", "result": result,
                      "seconds": round(time.perf_counter() - start, 3)}
        except Exception as err:
            record = {"id": tid, "config": options, "status": "failed", "error": _one_line(err)}
        store.append(record)
        done.add(tid)
        n_done += 1
        if progress is not None:
            progress(record, n_done, len(trials))

    latest = {r["id"]: r for r in store.records() if r.get("status") in ("ok", "failed")}
    return [latest[tid] for tid in ids if tid in latest]
