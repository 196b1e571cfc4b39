"""Exponential moving average of weights, with the warmup that keeps early averages from lagging."""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(step: int, decay: float) -> float:
    """`min(decay, (1 + step) / (10 + step))`: a short memory at first, `decay` once warmed up."""
    return min(decay, (1 + step) / (10 + step))


class EMA:
    """Keeps `shadow`, a copy of `model` whose parameters track `ema <- d * ema + (1 - d) * param`.

    Buffers are copied, not averaged. The update is one fused `_foreach_lerp_` over all tensors.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> float:
        """Move the average towards `model` after optimizer step `step` (0-based); returns the decay used."""
        d = ema_decay_at(step, self.decay)
        ema_params = list(self.shadow.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for ema_buffer, buffer in zip(self.shadow.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)
        return d

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow.load_state_dict(state)
