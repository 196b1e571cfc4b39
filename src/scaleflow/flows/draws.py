"""Seeded draws from a flow: what a network regresses on, and the fixed held-out draws that training
validation and `scaleflow eval` both score, with one coupling rule."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from scaleflow.flows.base import Flow, PathSample

VAL_SEED_OFFSET = 1_000_003  # validation draws never coincide with any training step's
MIN_VALIDATION_COUPLING = 256  # minibatch OT couples held-out rows in batches of at least this many


def step_generator(seed: int, step: int, device: torch.device | str) -> torch.Generator:
    """The generator for one step's draws: a pure function of (seed, step)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_000_007 + step)


def regression_target(sample: PathSample, prediction: str) -> torch.Tensor:
    """What the network is trained to output: the path velocity u_t, or the (coupled) data x1. `[B, D]`."""
    return sample.u_t if prediction == "velocity" else sample.x1


def validation_coupling_batch(batch_size: int, n_train: int) -> int:
    """Rows coupled together in held-out draws: the batch training coupled (its batch size, at most its
    rows), and at least `MIN_VALIDATION_COUPLING`. Training validation and `eval` both use this rule."""
    return max(min(batch_size, n_train), MIN_VALIDATION_COUPLING)


@dataclass
class ValidationSet:
    """Fixed `(t, x_t, target)` draws over held-out rows, so losses are comparable over time and runs."""

    t: torch.Tensor
    x_t: torch.Tensor
    target: torch.Tensor

    @property
    def baseline_loss(self) -> float:
        """Loss of the best constant predictor (the mean target): what 'learned nothing' scores."""
        return float((self.target - self.target.mean(0)).square().mean())


def make_validation_set(flow: Flow, x1: torch.Tensor, prediction: str, seed: int, batch_size: int,
                        x0: torch.Tensor | None = None) -> ValidationSet:
    """Draw noise (unless `x0` pairs are given), times and couplings once for held-out rows `x1: [N, D]`.

    Args:
        batch_size: rows coupled together (`validation_coupling_batch`).
        x0: `[N, D]` noise already paired with `x1` (reflow's held-out pairs); drawn when None.
    """
    g = step_generator(seed, VAL_SEED_OFFSET, x1.device)
    parts = []
    for i, rows in enumerate(x1.split(batch_size)):
        noise = (x0[i * batch_size:(i + 1) * batch_size] if x0 is not None
                 else torch.randn(rows.shape, generator=g, device=x1.device))
        sample = flow.sample_path(noise, rows, generator=g)
        parts.append((sample.t, sample.x_t, regression_target(sample, prediction)))
    return ValidationSet(*(torch.cat(p) for p in zip(*parts)))
