"""MLP velocity network: sinusoidal time features through a small MLP, concatenated with x."""
from __future__ import annotations

import torch
from torch import nn

from scaleflow.nets.time_embedding import TimestepEmbedder, broadcast_time


class MLPVelocityNetwork(nn.Module):
    """The ablation baseline of the design notes (their SimpleMLP).

    Structure, for `hidden_dim=h`, `num_layers=L`, `input_dim=D`:
        t -> sinusoidal(time_embed_dim) -> Linear -> SiLU -> Linear -> c: [B, h]
        [x, c]: [B, D + h] -> Linear(D + h, h) -> SiLU -> (L - 2) x [Linear(h, h) -> SiLU] -> Linear(h, D)

    Parameters at D=1024: tiny (128, 4) 362,112; small (256, 5) 920,064; base (384, 6) 1,773,184.
    """

    def __init__(self, input_dim: int = 1024, hidden_dim: int = 256, num_layers: int = 5, time_embed_dim: int = 256):
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"mlp needs num_layers >= 2 (an input and an output layer); got {num_layers}")
        self.input_dim = input_dim
        self.time_embed = TimestepEmbedder(hidden_dim, time_embed_dim)
        layers: list[nn.Module] = [nn.Linear(input_dim + hidden_dim, hidden_dim), nn.SiLU()]
        for _ in range(num_layers - 2):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.SiLU()]
        layers.append(nn.Linear(hidden_dim, input_dim))
        self.net = nn.Sequential(*layers)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # Near-zero output so the first velocities are small and the first losses finite.
        out = self.net[-1]
        nn.init.normal_(out.weight, std=0.01)
        nn.init.zeros_(out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """x: [B, D], t: scalar, [B] or [B, 1] -> v: [B, D]."""
        c = self.time_embed(broadcast_time(t, x))
        # In c's dtype: under autocast c is bf16 and the first Linear would cast the joined input to
        # bf16 anyway; joining in fp32 first only adds a pass over [B, D + h].
        return self.net(torch.cat([x.to(c.dtype), c], dim=-1))
