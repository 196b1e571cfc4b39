"""Training an image classifier with SGD, AdamW or Muon (+ AdamW): the optimizer scale study's loop.

Minibatches are drawn without replacement each epoch, in an order fixed by (seed, epoch); the rate follows
linear warmup then a cosine to zero, stepped every batch. A non-finite loss stops training and is reported
(`diverged`), rather than raising: a diverging optimizer at some scale is a result of the study. So are
non-finite weights after the last step, which no later loss would reveal.

Training resumes exactly: the state (weights, optimizer, position in the epoch, history) is handed to
`save_state` every `save_every` seconds and when a stop signal arrives (then `TrainingInterrupted` is
raised); `train_classifier(..., state=that)` continues from it, and since the batch order is a function of
(seed, epoch) the result equals an uninterrupted training's.
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scaleflow.data.images import ImageSplits
from scaleflow.training.optim import OPTIMIZERS, make_muon, make_optimizer
from scaleflow.training.schedule import warmup_cosine
from scaleflow.training.signals import StopRequest, TrainingInterrupted


@dataclass(frozen=True)
class ClassifierSettings:
    """Everything a classifier training uses, resolved (no "auto" left): what a trial records."""

    optimizer: str
    epochs: int
    batch_size: int
    lr: float  # peak rate of the optimizer (Muon: of the hidden matrices)
    aux_lr: float  # Muon only: AdamW's peak rate on everything else
    weight_decay: float
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")


def make_classifier_optimizer(model: nn.Module, settings: ClassifierSettings) -> tuple[torch.optim.Optimizer, list[dict]]:
    """The optimizer, and one record per parameter group: who trains it, how many tensors and values,
    its peak rate and weight decay. Muon uses torch's "original" per-matrix adjustment (rate x
    max(1, rows/cols)^0.5, Keller Jordan's convention, which the note's 1e-2 belongs to)."""
    s = settings
    if s.optimizer == "muon":
        optimizer = make_muon(model, s.lr, s.aux_lr, s.weight_decay, adjust_lr_fn="original")
        names = ["muon hidden matrices", "adamw other matrices", "adamw vectors"]
    else:  # the flow trainer's SGD and AdamW: weight decay on matrices only
        optimizer = make_optimizer(model, s.optimizer, s.lr, s.weight_decay)
        names = [f"{s.optimizer} matrices", f"{s.optimizer} vectors"]
    groups = []
    for name, group in zip(names, optimizer.param_groups):
        record = {"group": name, "lr": group["lr"], "weight_decay": group["weight_decay"],
                  "tensors": len(group["params"]), "values": sum(p.numel() for p in group["params"])}
        if name.startswith("muon"):  # torch's "original" adjustment: the rate each matrix shape really gets
            record["lr_by_shape"] = {f"{r}x{c}": group["lr"] * max(1.0, r / c) ** 0.5
                                     for r, c in sorted({tuple(p.shape) for p in group["params"]})}
        groups.append(record)
    return optimizer, groups


def _finite(model: nn.Module) -> bool:
    """Whether every parameter of `model` is finite (one device sync)."""
    return bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all())


def training_steps(train_rows: int, settings: ClassifierSettings) -> int:
    """How many optimizer steps a training takes: every epoch's batches, the last one possibly short."""
    return math.ceil(train_rows / settings.batch_size) * settings.epochs


def checkpoint_steps(total_steps: int, k: int) -> list[int]:
    """`k` evenly spaced steps of a `total_steps` training, the last at its end (step counts after the update)."""
    return sorted({max(1, round(total_steps * i / k)) for i in range(1, k + 1)}) if k > 0 else []


def train_classifier(model: nn.Module, data: ImageSplits, settings: ClassifierSettings, device: torch.device,
                     analyse_at: Sequence[int] = (), analyse: Optional[Callable[[int], dict]] = None,
                     state: Optional[dict] = None, save_state: Optional[Callable[[dict], None]] = None,
                     save_every: float = 60.0, stop: Optional[StopRequest] = None) -> dict:
    """Train `model` on `data.train` in place; call `analyse(step)` after each step in `analyse_at`.

    Args:
        state: a state `save_state` was given: training continues from it.
        save_state: called with the state (a dict for `torch.save`) every `save_every` seconds of
            training and when `stop` is set; None saves nothing.
        stop: set by a signal handler (`signals.stop_on_signals`): the state is saved after the step in
            progress and `TrainingInterrupted` raised.

    Returns:
        {"steps", "steps_per_epoch", "epochs", "wall_seconds", "steps_per_second", "epoch_train_loss" (mean
        training loss per epoch), "diverged" (bool), "diverged_at_step", "lr_groups", "checkpoints",
        "resumed_at_step"}.
    """
    s = settings
    images, labels = (t.to(device) for t in data.train)
    n = len(labels)
    steps_per_epoch = math.ceil(n / s.batch_size)
    total = training_steps(n, s)
    warmup = int(round(s.warmup_fraction * total))
    model.to(device).train()
    optimizer, lr_groups = make_classifier_optimizer(model, s)
    peaks = [g["lr"] for g in optimizer.param_groups]  # before a loaded state overwrites them with decayed rates
    step, epoch0, batch0, loss_sum, epoch_losses, checkpoints, before = 0, 0, 0, 0.0, [], [], 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch0, batch0, loss_sum = state["step"], state["epoch"], state["batch"], state["loss_sum"]
        epoch_losses, checkpoints, before = list(state["epoch_losses"]), list(state["checkpoints"]), state["seconds"]
    resumed_at = step if state is not None else None
    diverged_at = None
    wanted = set(analyse_at)
    start = last_save = time.perf_counter()

    def snapshot(epoch: int, batch: int) -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "epoch": epoch,
                "batch": batch, "loss_sum": loss_sum, "epoch_losses": epoch_losses, "checkpoints": checkpoints,
                "seconds": before + time.perf_counter() - start, "settings": asdict(s)}

    for epoch in range(epoch0, s.epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(s.seed * 1_000_003 + epoch)).to(device)
        for b in range(batch0 if epoch == epoch0 else 0, steps_per_epoch):
            rows = order[b * s.batch_size:(b + 1) * s.batch_size]
            factor = warmup_cosine(step, total, warmup, min_ratio=0.0)
            for group, peak in zip(optimizer.param_groups, peaks):
                group["lr"] = peak * factor
            loss = F.cross_entropy(model(images[rows]), labels[rows], label_smoothing=s.label_smoothing)
            if not torch.isfinite(loss):
                diverged_at = step
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if s.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach()) * len(rows)
            if step in wanted and analyse is not None:
                paused = time.perf_counter()
                checkpoints.append({"step": step, "epoch": step / steps_per_epoch, **analyse(step)})
                start += time.perf_counter() - paused  # analysis is not training time
            if b + 1 == steps_per_epoch:
                epoch_losses.append(loss_sum / n)
                loss_sum = 0.0
            if step < total and (stop or (save_state is not None and time.perf_counter() - last_save >= save_every)):
                if save_state is not None:
                    paused = time.perf_counter()
                    following = (epoch, b + 1) if b + 1 < steps_per_epoch else (epoch + 1, 0)
                    save_state(snapshot(*following))
                    last_save = time.perf_counter()
                    start += last_save - paused  # saving is not training time either
                if stop:
                    name = signal.Signals(stop.signum).name
                    saved = "state saved" if save_state is not None else "no state saved"
                    raise TrainingInterrupted(f"{name} received: stopped at step {step} of {total}, {saved}", stop.signum)
        if diverged_at is not None:
            break
    if diverged_at is None and step > 0 and not _finite(model):
        # The last update made the weights non-finite: no later loss is computed to show it (before the
        # last step, the next step's loss does), and the study must not score a broken model as trained.
        diverged_at = step
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = before + time.perf_counter() - start
    return {"steps": step, "steps_per_epoch": steps_per_epoch, "epochs": s.epochs, "wall_seconds": seconds,
            "steps_per_second": step / seconds if seconds > 0 else None, "epoch_train_loss": epoch_losses,
            "diverged": diverged_at is not None, "diverged_at_step": diverged_at, "lr_groups": lr_groups,
            "settings": asdict(s), "checkpoints": checkpoints, "resumed_at_step": resumed_at}
