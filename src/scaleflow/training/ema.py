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

    Buffers are copied, not averaged. The parameters' update is one `_foreach_lerp_` over all of them.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)
        self._cached: tuple[nn.Module, list, list, list[tuple[nn.Module, nn.Module, str]]] | None = None

    def _tensors(self, model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[tuple[nn.Module, nn.Module, str]]]:
        """(shadow's parameters, model's parameters, (shadow module, model module, name) of each buffer).

        Walking the module tree costs more than the update on small networks, so it is done once per
        model. Parameter objects survive `.to()` (their data is swapped); buffers do not (`.to()`
        replaces them), so buffers are kept as where-to-find-them and looked up at each update."""
        if self._cached is None or self._cached[0] is not model:
            buffers = [(shadow_module, module, name)
                       for shadow_module, module in zip(self.shadow.modules(), model.modules())
                       for name, buffer in module.named_buffers(recurse=False) if buffer is not None]
            self._cached = (model, list(self.shadow.parameters()), list(model.parameters()), buffers)
        return self._cached[1:]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> float:
        """Move the average towards `model` after optimizer step `step` (0-based); returns the decay used."""
        d = ema_decay_at(step, self.decay)
        shadow_params, params, buffers = self._tensors(model)
        torch._foreach_lerp_(shadow_params, params, 1.0 - d)
        for shadow_module, module, name in buffers:
            getattr(shadow_module, name).copy_(getattr(module, name))
        return d

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow.load_state_dict(state)
