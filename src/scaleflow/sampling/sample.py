"""Sampling a velocity field from noise, inverting data back to noise, and the round trip between them."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch

from scaleflow.sampling.solvers import StepHook, VelocityFn, integrate


@dataclass
class SampleBatch:
    """Generated (or inverted) points with what it cost.

    Attributes:
        x: `[N, D]` end points (normalized space: the space the network was trained in).
        x0: `[N, D]` start points (the noise when sampling, the data when inverting).
        nfe: velocity evaluations per point (summed over solver calls of one chunk, not over chunks).
        seconds: wall time of all chunks.
    """

    x: torch.Tensor
    x0: torch.Tensor
    nfe: int
    seconds: float


def _solve_in_chunks(velocity: VelocityFn, start: torch.Tensor, t0: float, t1: float, solver: str, steps: int,
                     batch_size: int, step_hook: Optional[StepHook], rtol: float, atol: float) -> SampleBatch:
    began = time.perf_counter()
    ends, nfe = [], 0
    for chunk in start.split(batch_size):
        result = integrate(velocity, chunk, t0, t1, solver, steps, rtol, atol, step_hook)
        ends.append(result.x)
        nfe = max(nfe, result.nfe)
    if start.device.type == "cuda":
        torch.cuda.synchronize(start.device)
    return SampleBatch(torch.cat(ends), start, nfe, time.perf_counter() - began)


# Independent noise streams: reflow's training pairs must never share noise with the draws that
# `sample` and `eval` make, whatever seeds either is given.
NOISE_STREAMS = {"sample": 0, "reflow": 1}
# torch's CPU generator keeps only the low 32 bits of a seed: seeds are < 2**31 and each stream takes
# its own half of those bits, so (stream, seed) -> generator seed is one-to-one.
_STREAM_STRIDE = 2 ** 31


def sample_noise(n: int, dim: int, seed: int = 0, device: torch.device | str = "cpu",
                 stream: str = "sample") -> torch.Tensor:
    """`[n, dim]` standard normal noise, a pure function of `(stream, seed)` on any device (drawn on
    the CPU). `stream`: "sample" (sampling and evaluation) or "reflow" (reflow's training pairs)."""
    if stream not in NOISE_STREAMS:
        raise ValueError(f"stream must be one of {', '.join(NOISE_STREAMS)}; got {stream!r}")
    if not 0 <= seed < _STREAM_STRIDE:
        raise ValueError(f"seed (--seed) must be in [0, 2**31); got {seed}")
    g = torch.Generator().manual_seed(NOISE_STREAMS[stream] * _STREAM_STRIDE + seed)
    return torch.randn(n, dim, generator=g).to(device)


def generate(velocity: VelocityFn, n: int, dim: int, solver: str = "heun", steps: int = 20, seed: int = 0,
             device: torch.device | str = "cpu", batch_size: int = 4096, step_hook: Optional[StepHook] = None,
             rtol: float = 1e-5, atol: float = 1e-5, stream: str = "sample", noise_scale: float = 1.0) -> SampleBatch:
    """Integrate `n` noise points from t=0 to t=1: `[n, dim]` samples in the normalized space.

    `step_hook(step, t, x, v)` runs after each fixed solver step (guidance plugs in here); `stream`
    picks the noise stream (`sample_noise`). `noise_scale` (temperature) multiplies the starting noise:
    below 1 the samples move towards the data's dense regions (precision up, recall and diversity down),
    above 1 away from them; 1 samples the prior as trained.
    """
    if not 0 < noise_scale < float("inf"):
        raise ValueError(f"noise scale (--noise-scale) must be > 0 and finite; got {noise_scale}")
    noise = sample_noise(n, dim, seed, device, stream)
    if noise_scale != 1.0:
        noise = noise * noise_scale
    return _solve_in_chunks(velocity, noise, 0.0, 1.0, solver, steps, batch_size, step_hook, rtol, atol)


def invert(velocity: VelocityFn, x: torch.Tensor, solver: str = "heun", steps: int = 20, batch_size: int = 4096,
           rtol: float = 1e-5, atol: float = 1e-5) -> SampleBatch:
    """Integrate data `x: [N, D]` backwards from t=1 to t=0: the noise that would generate it."""
    return _solve_in_chunks(velocity, x, 1.0, 0.0, solver, steps, batch_size, None, rtol, atol)


def reconstruction_errors(velocity: VelocityFn, x: torch.Tensor, solver: str = "heun", steps: int = 20,
                          batch_size: int = 4096, rtol: float = 1e-5, atol: float = 1e-5) -> torch.Tensor:
    """Per-row mean squared error of the round trip data -> noise -> data: `[N]`.

    With an exact solver this is zero for any velocity field; what it measures is how well the
    chosen solver and step count integrate this field (curved fields need more steps).
    """
    noise = invert(velocity, x, solver, steps, batch_size, rtol, atol).x
    back = _solve_in_chunks(velocity, noise, 0.0, 1.0, solver, steps, batch_size, None, rtol, atol).x
    return (back - x).square().mean(dim=1)
