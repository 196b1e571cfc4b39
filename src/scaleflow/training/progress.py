"""A Rich progress bar for training: step, loss, best val loss, steps/s."""
from __future__ import annotations

import math

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainingProgress:
    """Context manager; `update(step, loss, rate)`; set `val_loss` to show the best so far."""

    def __init__(self, total: int, completed: int = 0, enabled: bool = True):
        self.val_loss = math.inf
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[rate]} steps/s"), TimeRemainingColumn(), disable=not enabled,
        )
        self.task = self.progress.add_task("train", total=total, completed=completed, loss="-", val="-", rate="-")

    def __enter__(self) -> "TrainingProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, step: int, loss: float, rate: float) -> None:
        val = f"{self.val_loss:.4f}" if math.isfinite(self.val_loss) else "-"
        self.progress.update(self.task, completed=step, loss=f"{loss:.4f}", val=val, rate=f"{rate:.1f}")
