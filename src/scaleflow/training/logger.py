"""Where training records go: always `metrics.jsonl` in the run, and W&B when asked for."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from scaleflow.training.config import ConfigError
from scaleflow.files import append_jsonl, write_text


def require_wandb() -> None:
    """Refuse `--wandb` without Weights & Biases installed (called before anything is written)."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("--wandb: Weights & Biases is not installed; pip install 'scaleflow[wandb]'") from None


def log_finished_run(project: str, group: str, name: str, config: dict[str, Any], summary: dict[str, Any],
                     history: Optional[list[dict[str, Any]]] = None, folder: Optional[Path] = None,
                     key: Optional[str] = None) -> None:
    """One finished unit of a study (a sweep trial, a search's method and seed) as one W&B run: `config` its
    options, `summary` its numbers, `history` rows logged in order (each may carry "step"), grouped under
    `group` (the sweep's or search's name) so W&B compares the units side by side. Offline unless `WANDB_MODE`
    says otherwise; the run's files go under `folder` (default: W&B's own). The run's id hashes `key` (default:
    the folder's resolved path) and `name`: the same unit of the same folder is the same W&B run."""
    require_wandb()
    import wandb

    import hashlib

    where = key or (str(Path(folder).resolve()) if folder is not None else group)
    run_id = hashlib.sha1(f"{where}\0{name}".encode()).hexdigest()[:16]
    run = wandb.init(project=project, group=group, name=name, id=run_id, config=config,
                     mode=os.environ.get("WANDB_MODE", "offline"), resume="allow",
                     dir=str(folder) if folder is not None else None, reinit=True)
    try:
        for row in history or []:
            row = dict(row)
            step = row.pop("step", None)
            run.log(row, step=step) if step is not None else run.log(row)
        run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) or v is None})
    finally:
        run.finish()


class MetricsLogger:
    """`log(record)` appends a JSON line to `run_dir/metrics.jsonl` and mirrors it to W&B if enabled.

    W&B runs offline unless `WANDB_MODE` says otherwise, so nothing leaves the machine by default;
    `wandb sync` uploads later.
    """

    def __init__(self, run_dir: Path, wandb_project: Optional[str] = None, config: Optional[dict] = None,
                 resume: bool = False):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.wandb = None
        if wandb_project is not None:
            require_wandb()
            import wandb

            self.wandb = wandb.init(
                project=wandb_project, name=Path(run_dir).name, dir=str(run_dir), config=config,
                mode=os.environ.get("WANDB_MODE", "offline"), resume="allow" if resume else None,
                id=_run_id(run_dir),
            )

    def log(self, record: dict[str, Any]) -> None:
        try:
            append_jsonl(self.path, record)
        except OSError as err:  # a full or vanished disk: say which file, in one line
            raise OSError(f"{self.path}: could not append a record ({err.strerror or err})") from None
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def drop_after(self, step: int) -> None:
        """Forget the records of steps after `step`, and a last line cut short by a kill: a resumed run
        replays those steps and logs them again, so each step appears once."""
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
        if len(kept) != len(lines):
            write_text(self.path, "".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def _step_of(line: str) -> Optional[int]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record.get("step") if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def _run_id(run_dir: Path) -> str:
    """A stable W&B id per run folder, so a resumed run continues the same W&B run."""
    import hashlib

    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
