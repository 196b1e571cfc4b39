"""Time features shared by every velocity network: sinusoidal features, the timestep MLP, AdaLN."""
from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of time, as in DiT and the Transformer.

    Times live in [0, 1] here, so they are scaled by 1000 first: without it the
    low-frequency half of the features would be nearly constant over the whole path.

    Args:
        t: `[B]` times.
        dim: number of features (odd dims get one zero column).

    Returns:
        `[B, dim]` embedding `[cos(f t), sin(f t)]`.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (1000.0 * t.float())[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb.to(t.dtype) if t.is_floating_point() else emb


class TimestepEmbedder(nn.Module):
    """Sinusoidal features -> Linear -> SiLU -> Linear: `t: [B]` -> `[B, out_dim]`."""

    def __init__(self, out_dim: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_dim))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: `x: [B, L, H]`, `shift, scale: [B, H]` -> `x * (1 + scale) + shift` (zero shift/scale = identity)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)
