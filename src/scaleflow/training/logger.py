"""Where training records go: always `metrics.jsonl` in the run, and W&B when asked for."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from scaleflow.training.config import ConfigError
from scaleflow.files import append_jsonl


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
            try:
                import wandb
            except ImportError:
                raise ConfigError("--wandb: Weights & Biases is not installed; pip install 'scaleflow[wandb]'") from None
            self.wandb = wandb.init(
                project=wandb_project, name=Path(run_dir).name, dir=str(run_dir), config=config,
                mode=os.environ.get("WANDB_MODE", "offline"), resume="allow" if resume else None,
                id=_run_id(run_dir),
            )

    def log(self, record: dict[str, Any]) -> None:
        append_jsonl(self.path, record)
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def _run_id(run_dir: Path) -> str:
    """A stable W&B id per run folder, so a resumed run continues the same W&B run."""
    import hashlib

    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
