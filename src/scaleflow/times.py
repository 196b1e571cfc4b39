"""One rule for the shape of a time argument, shared by the networks and the flows."""
from __future__ import annotations

import torch


def broadcast_time(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Bring `t` to one time per row of `x`.

    Args:
        t: a Python number, a 0-d tensor, `[B]` or `[B, 1]`.
        x: `[B, D]`, whose batch size, device and dtype `t` takes.

    Returns:
        `[B]` tensor of times.
    """
    t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.dim() != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"t must be a scalar, [B] or [B, 1] with B={x.shape[0]}; got shape {tuple(t.shape)}")
    return t
