"""A trained network seen as a velocity field, whatever it was trained to predict."""
from __future__ import annotations

import torch
from torch import nn

from scaleflow.flows.base import Flow


class VelocityField:
    """`v(x: [B, D], t: [B]) -> [B, D]` from a network and its flow.

    A velocity-predicting network is used as is; a data (x1) predicting one is turned into the
    velocity its flow implies (`Flow.velocity_from_x1`), and the solvers take its last step to the
    prediction itself instead of evaluating that velocity at t = 1. Evaluation runs in `autocast_dtype` when
    given (e.g. bfloat16 on the CPU), and the result is always float32-or-wider like `x`.
    """

    def __init__(self, model: nn.Module, flow: Flow, prediction: str = "velocity",
                 autocast_dtype: torch.dtype | None = None):
        if prediction not in ("velocity", "x1"):
            raise ValueError(f"prediction must be 'velocity' or 'x1'; got {prediction!r}")
        self.model, self.flow, self.prediction, self.autocast_dtype = model, flow, prediction, autocast_dtype

    def network_output(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The raw network output `[B, D]` (a velocity or an x1 estimate)."""
        if self.autocast_dtype is None:
            return self.model(x, t)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            return self.model(x, t).to(x.dtype)

    @property
    def singular_at_one(self) -> bool:
        """An x1 network's velocity divides by alpha(t), which vanishes at t = 1: the solvers then
        never evaluate the velocity there (see `sampling.solvers`)."""
        return self.prediction == "x1"

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.network_output(x, t)
        return out if self.prediction == "velocity" else self.flow.velocity_from_x1(x, out, t)

    def predict_endpoint(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The data point `x1_hat: [B, D]` the network expects `x: [B, D]` at times `t: [B]` to reach."""
        out = self.network_output(x, t)
        return out if self.prediction == "x1" else self.flow.x1_from_velocity(x, out, t)
