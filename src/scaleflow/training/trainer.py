"""The training loop: batches by index from a resident dataset, AdamW, clipping, EMA, validation,
early stopping, best/last checkpoints, exact resume and a clean stop on SIGTERM/SIGINT.

Every random draw of step `s` (batch order, noise, times, coupling) comes from generators seeded
by `(seed, s)`, so a resumed run replays the uninterrupted one exactly without saving RNG streams.
"""
from __future__ import annotations

import math
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn

from scaleflow.flows.base import Flow
from scaleflow.flows.draws import (ValidationSet, make_validation_set, regression_target, step_generator,
                                    validation_coupling_batch)
from scaleflow.data.augmentation import Augmentation
from scaleflow.files import read_torch, write_safetensors, write_torch
from scaleflow.training.config import TrainConfig
from scaleflow.training.ema import EMA
from scaleflow.training.logger import MetricsLogger
from scaleflow.training.optim import make_optimizer
from scaleflow.training.precision import autocast_dtype
from scaleflow.training.progress import TrainingProgress
from scaleflow.training.schedule import warmup_cosine
from scaleflow.training.signals import StopRequest


class TrainingDiverged(ValueError):
    """The loss became NaN or Inf; the message says where and what was kept."""


SAMPLE_SCORE_ROWS = 1000  # samples (and at most as many validation rows) behind select_by "samples"


class RunWriteError(OSError):
    """A run file could not be written (full or vanished disk); the previous one is intact."""


@dataclass
class TrainState:
    """What a resumable checkpoint holds besides the tensors."""

    step: int = 0  # steps completed
    best_val_loss: float = math.inf
    best_step: int = -1
    best_score: float = -math.inf  # select_by "samples": the best worst ratio of samples against validation rows
    bad_validations: int = 0
    wall_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)  # validation records


class Trainer:
    """Trains `model` on `train: [N, D]` (normalized) with `flow`, writing into `run_dir`.

    Args:
        val: `[M, D]` held-out rows (normalized); with `val_x0`, reflow's held-out pairs `(val_x0, val)`.
        pairs_x0: for reflow, the noise `[N, D]` paired with each training row; otherwise fresh noise.
        on_step: called as `on_step(step)` after each completed step (tests simulate crashes with it).
        stop: set by a signal (`signals.stop_on_signals`): the run checkpoints the step it is in and stops.
    """

    def __init__(self, config: TrainConfig, model: nn.Module, flow: Flow, train: torch.Tensor, val: torch.Tensor,
                 run_dir: Path, pairs_x0: Optional[torch.Tensor] = None, on_step: Optional[Callable[[int], None]] = None,
                 progress: bool = True, logger: Optional[MetricsLogger] = None, val_x0: Optional[torch.Tensor] = None,
                 stop: Optional[StopRequest] = None, to_original: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 to_scoring: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        self.cfg, self.flow, self.run_dir, self.on_step, self.progress = config, flow, Path(run_dir), on_step, progress
        # select_by "samples" scores as `eval` does: in `to_scoring`'s space (the per-dimension standardization,
        # for a run trained in another; None: the run's own), validity's cosines in the original space.
        self.to_original, self.to_scoring = to_original, to_scoring
        self._score_rows: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None
        self.stop = stop if stop is not None else StopRequest()
        self.device = train.device
        self.model = model.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.train, self.val_rows, self.pairs_x0 = train, val, pairs_x0
        self.batch_size = min(config.batch_size, len(train))
        self.steps_per_epoch = len(train) // self.batch_size
        self.augment = Augmentation.parse(config.aug)  # identity (no draws) when off
        self.optimizer = make_optimizer(self.model, config.optimizer, config.lr, config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, config.steps, config.warmup_steps, config.min_lr_ratio))
        self.ema = EMA(self.model, config.ema_decay)
        self.validation: ValidationSet = make_validation_set(
            flow, val, config.prediction, config.seed, validation_coupling_batch(config.batch_size, len(train)), x0=val_x0)
        self.autocast = autocast_dtype(config.precision, self.device)
        self.state = TrainState()
        self._checkpointed: Optional[int] = None  # step of the checkpoint on disk that this trainer wrote or read
        self.logger = logger or MetricsLogger(self.run_dir)
        self._epoch, self._order = -1, None

    # --- one step -----------------------------------------------------------------------------
    def batch_indices(self, step: int) -> torch.Tensor:
        """Row indices of step `step`: a fresh seeded permutation per epoch, cut into batches."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = step_generator(self.cfg.seed, -1 - epoch, torch.device("cpu"))
            self._epoch, self._order = epoch, torch.randperm(len(self.train), generator=g).to(self.device)
        return self._order[k * self.batch_size:(k + 1) * self.batch_size]

    def loss(self, x_t: torch.Tensor, t: torch.Tensor, target: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """Mean squared error of `model(x_t, t)` against `target`; autocast only while training, so
        validation losses are full-precision numbers comparable across precisions."""
        if self.autocast is None or not model.training:
            out = model(x_t, t)
        else:
            with torch.autocast(self.device.type, dtype=self.autocast):
                out = model(x_t, t)
        return F.mse_loss(out.float(), target)

    def train_step(self, step: int) -> tuple[float, float]:
        index = self.batch_indices(step)
        g = step_generator(self.cfg.seed, step, self.device)
        # index_select, not self.train[index]: the same rows, a row-copy kernel 5x faster than advanced indexing
        x1 = self.train.index_select(0, index)
        x0 = (self.pairs_x0.index_select(0, index) if self.pairs_x0 is not None
              else torch.randn(x1.shape, generator=g, device=self.device))
        x1 = self.augment(x1, g)  # data rows only, before coupling; drawn after x0, so x0 is the same with or without
        sample = self.flow.sample_path(x0, x1, generator=g)
        loss = self.loss(sample.x_t, sample.t, regression_target(sample, self.cfg.prediction), self.model)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None], foreach=True)
        loss_value, grad_value = torch.stack([loss.detach(), grad_norm.float()]).tolist()  # one device sync
        if not math.isfinite(loss_value):
            raise TrainingDiverged(self._diverged_message(step, loss_value))
        if self.cfg.grad_clip and grad_value + 1e-6 > self.cfg.grad_clip:
            # Only when the limit bites: below it clip_grad_norm_ multiplies every gradient by exactly 1,
            # a full pass over them that cost 9% of a step (the norm is known here anyway).
            torch.nn.utils.clip_grads_with_norm_(self.params, self.cfg.grad_clip, grad_norm, foreach=True)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model, step)
        return loss_value, grad_value

    def _diverged_message(self, step: int, loss: float) -> str:
        last = self.checkpoint_path
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint had been written yet"
        return f"loss became {loss} at step {step}; training stopped and {kept}; try a lower --lr or --grad-clip"

    # --- validation and checkpoints ------------------------------------------------------------
    @torch.no_grad()
    def validate(self, model: nn.Module) -> float:
        """Mean loss of `model` on the fixed validation draws (in fp32)."""
        was_training = model.training
        model.eval()
        v = self.validation
        total = sum(
            float(self.loss(x, t, y, model)) * len(x)
            for x, t, y in zip(v.x_t.split(1024), v.t.split(1024), v.target.split(1024))
        )
        model.train(was_training)
        return total / len(v.x_t)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def save_best(self) -> None:
        for name, weights in (("model.safetensors", self.model.state_dict()), ("ema.safetensors", self.ema.state_dict())):
            self._write(self.run_dir / name, write_safetensors, weights)

    def save_checkpoint(self) -> None:
        self._write(self.checkpoint_path, write_torch, {
            "state": self.state.__dict__, "model": self.model.state_dict(), "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            # On a GPU, dropout (mlp_dropout) draws its masks from the device's generator: saved too.
            **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
        })
        self._checkpointed = self.state.step

    def _write(self, path: Path, write: Callable[[Path, Any], None], obj: Any) -> None:
        """`write(path, obj)`, atomic and flushed (`files.atomic_write`): a crash or a full disk leaves the
        previous version whole. A failure becomes one line saying what was kept and how to go on."""
        try:
            write(path, obj)
        except (OSError, RuntimeError, SafetensorError) as err:  # torch.save says "unexpected pos 576 vs 534"
            reason = err.strerror if isinstance(err, OSError) and err.strerror else _free_space(path.parent)
            last = self.checkpoint_path
            step = "" if self._checkpointed is None else f" (step {self._checkpointed})"
            kept = f"the checkpoint in {last}{step} is intact" if last.exists() else "no checkpoint had been written yet"
            raise RunWriteError(f"{path}: could not be written ({reason}); {kept}; free space or fix the disk, then "
                                f"continue with: scaleflow train --resume --out {shlex.quote(str(self.run_dir))}") from None

    def load_checkpoint(self, path: Path) -> None:
        ckpt = read_torch(path, self.device, keys=("state", "model", "ema", "optimizer", "scheduler", "torch_rng"))
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())  # map_location moved it; the CPU RNG wants it back
        if self.device.type == "cuda" and "cuda_rng" in ckpt:
            torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), self.device)
        self.state = TrainState(**ckpt["state"])
        self._checkpointed = self.state.step

    # --- the loop ------------------------------------------------------------------------------
    def fit(self) -> TrainState:
        """Run from `state.step` to `config.steps` (or early stopping). Returns the final state."""
        cfg, state = self.cfg, self.state
        started, start_step = time.perf_counter(), state.step
        wall_before = state.wall_seconds
        with TrainingProgress(cfg.steps, start_step, enabled=self.progress) as bar:
            step = start_step
            while step < cfg.steps:
                if self.stop:  # a signal came during the last step (or before the first)
                    self._stop_on_signal(step)
                loss, grad_norm = self.train_step(step)
                step += 1
                state.step = step
                state.wall_seconds = wall_before + time.perf_counter() - started
                rate = (step - start_step) / max(state.wall_seconds - wall_before, 1e-9)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    self.logger.log({"step": step, "loss": loss, "grad_norm": grad_norm,
                                     "lr": self.scheduler.get_last_lr()[0], "steps_per_s": rate})
                stop = False
                if step % cfg.val_every == 0 or step == cfg.steps:
                    stop = self._validate_and_track(step)
                    bar.val_loss = state.best_val_loss
                bar.update(step, loss, rate)
                if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop:
                    self.save_checkpoint()
                if self.on_step is not None:
                    self.on_step(step)
                if stop:
                    break
        return state

    def _stop_on_signal(self, step: int) -> None:
        """Checkpoint `step` (unless just done) and raise the `TrainingInterrupted` saying how to go on."""
        if self._checkpointed != step:
            self.save_checkpoint()
        raise self.stop.interrupted(step, self.cfg.steps, self.checkpoint_path, self.run_dir)

    @torch.no_grad()
    def sample_score(self, model: nn.Module) -> tuple[float, Optional[str]]:
        """The memorization-aware worst ratio (`evaluation.ranking`) of `model`'s samples against the validation
        rows, each measure beside a draw of training rows, and its binding measure. The same noise, real draw
        and rows at every validation, drawn from generators of their own (the training RNG is untouched, so
        resuming stays exact). n = min(validation rows, training rows, 1,000); heun, 20 steps, as `eval`."""
        from scaleflow.evaluation.ranking import worst_ratio
        from scaleflow.evaluation.scores import point_scores
        from scaleflow.sampling.sample import generate
        from scaleflow.sampling.velocity import VelocityField

        val, real_draw, train = self._scoring_rows()
        was_training = model.training
        model.eval()
        samples = generate(VelocityField(model, self.flow, self.cfg.prediction), len(real_draw), self.train.shape[1],
                           "heun", 20, self.cfg.seed, self.device).x
        model.train(was_training)
        if self.to_scoring is not None:
            samples = self.to_scoring(samples)
        score, binding = worst_ratio(point_scores(samples, val, real_draw, train, self.to_original))
        return (score if score is not None else -math.inf), binding

    def _scoring_rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`sample_score`'s validation rows, real draw (n = min(validation rows, training rows, 1,000) training
        rows from a generator of its own) and training rows, in the scoring space: the same at every validation,
        so made once."""
        if self._score_rows is None:
            n = min(len(self.val_rows), len(self.train), SAMPLE_SCORE_ROWS)
            g = torch.Generator().manual_seed(self.cfg.seed + 1)
            real_draw = self.train[torch.randperm(len(self.train), generator=g)[:n].to(self.device)]
            rows = (self.val_rows, real_draw, self.train)
            self._score_rows = tuple(self.to_scoring(x) for x in rows) if self.to_scoring is not None else rows
        return self._score_rows

    def _validate_and_track(self, step: int) -> bool:
        """Validate EMA and raw weights, keep the best (by validation loss, or by the samples' worst ratio with
        `select_by: samples`), and say whether patience ran out."""
        state = self.state
        val_loss, raw_loss = self.validate(self.ema.shadow), self.validate(self.model)
        record = {"step": step, "val_loss": val_loss, "val_loss_raw": raw_loss}
        if self.cfg.select_by == "samples":
            record["val_worst_ratio"], record["val_binding"] = self.sample_score(self.ema.shadow)
            better = record["val_worst_ratio"] > state.best_score
        else:
            better = val_loss < state.best_val_loss
        self.logger.log(record)
        state.history.append(record)
        if better:
            state.best_val_loss, state.best_step, state.bad_validations = val_loss, step, 0
            state.best_score = record.get("val_worst_ratio", state.best_score)
            self.save_best()
        elif step > self.cfg.min_steps:  # patience counts from min_steps: a plateau before it costs nothing
            state.bad_validations += 1
        return self.cfg.patience > 0 and state.bad_validations >= self.cfg.patience



def _free_space(folder: Path) -> str:
    """Why a write failed when the writer does not say (torch.save): the disk's free space, or that it is gone."""
    try:
        return f"the write failed with {shutil.disk_usage(folder).free / 2**20:.1f} MiB free on its disk"
    except OSError as err:
        return f"its folder is unusable: {err.strerror or err}"
