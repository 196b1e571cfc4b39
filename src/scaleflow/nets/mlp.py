"""MLP velocity network: x and sinusoidal time features (through a small MLP) into one MLP."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scaleflow.nets.time_embedding import TimestepEmbedder
from scaleflow.times import broadcast_time


class JoinedInputLinear(nn.Module):
    """`Linear(D + h, out)` applied to `[x, c]`, its weight held as the blocks `[W_x, W_c]`.

    `x W_x^T + c W_c^T + b` is the same map, but backward then skips `dL/dx`, which a path point
    never needs; through the joined input it costs D/(D+h) of that layer's input gradient (about 5%
    of the small MLP's matmul work). Initialized exactly as `nn.Linear(D + h, out)` would be.
    """

    def __init__(self, x_dim: int, c_dim: int, out_dim: int):
        super().__init__()
        weight = torch.empty(out_dim, x_dim + c_dim)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # nn.Linear's initialization, same draws
        bound = 1 / math.sqrt(x_dim + c_dim)
        self.weight_x = nn.Parameter(weight[:, :x_dim].clone())
        self.weight_c = nn.Parameter(weight[:, x_dim:].clone())
        self.bias = nn.Parameter(torch.empty(out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: [B, x_dim], c: [B, c_dim] -> [B, out_dim]."""
        return F.linear(x, self.weight_x) + F.linear(c, self.weight_c, self.bias)


class MLPVelocityNetwork(nn.Module):
    """The ablation baseline of the design notes (their SimpleMLP).

    Structure, for `hidden_dim=h`, `num_layers=L`, `input_dim=D`:
        t -> sinusoidal(time_embed_dim) -> Linear -> SiLU -> Linear -> c: [B, h]
        [x, c]: [B, D + h] -> Linear(D + h, h) -> SiLU -> (L - 2) x [Linear(h, h) -> SiLU] -> Linear(h, D)

    (the first Linear is a `JoinedInputLinear`: the same map, without joining x and c).

    Parameters at D=1024: tiny (128, 4) 362,112; small (256, 5) 920,064; base (384, 6) 1,773,184.
    """

    def __init__(self, input_dim: int = 1024, hidden_dim: int = 256, num_layers: int = 5, time_embed_dim: int = 256,
                 mlp_dropout: float = 0.0):
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"mlp needs num_layers >= 2 (an input and an output layer); got {num_layers}")
        if not 0 <= mlp_dropout < 1:
            raise ValueError(f"mlp_dropout must be in [0, 1); got {mlp_dropout}")
        self.mlp_dropout = mlp_dropout  # after each hidden activation, in training only
        self.input_dim = input_dim
        self.time_embed = TimestepEmbedder(hidden_dim, time_embed_dim)
        self.input_layer = JoinedInputLinear(input_dim, hidden_dim, hidden_dim)
        layers: list[nn.Module] = [nn.SiLU()]
        for _ in range(num_layers - 2):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.SiLU()]
        layers.append(nn.Linear(hidden_dim, input_dim))
        self.net = nn.Sequential(*layers)
        self.initialize_weights()
        self._register_load_state_dict_pre_hook(_from_joined_layout)

    def initialize_weights(self) -> None:
        # Near-zero output so the first velocities are small and the first losses finite.
        out = self.net[-1]
        nn.init.normal_(out.weight, std=0.01)
        nn.init.zeros_(out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """x: [B, D], t: scalar, [B] or [B, 1] -> v: [B, D]."""
        c = self.time_embed(broadcast_time(t, x))
        h = self.input_layer(x, c)
        if not (self.mlp_dropout and self.training):
            return self.net(h)
        for layer in self.net:
            h = layer(h)
            if isinstance(layer, nn.SiLU):
                h = F.dropout(h, self.mlp_dropout, training=True)
        return h


def _from_joined_layout(state_dict: dict, prefix: str, *args) -> None:
    """Load weights saved before the input layer was split (`net.0` = Linear(D + h, h) on [x, c],
    then `net.1, net.2, ...`): split `net.0.weight` at column D and shift the later layers down one."""
    if prefix + "net.0.weight" not in state_dict:
        return
    joined, bias = state_dict.pop(prefix + "net.0.weight"), state_dict.pop(prefix + "net.0.bias")
    start = len(prefix + "net.")
    for key in sorted((k for k in state_dict if k.startswith(prefix + "net.")), key=lambda k: int(k[start:].split(".")[0])):
        index, rest = key[start:].split(".", 1)
        state_dict[f"{prefix}net.{int(index) - 1}.{rest}"] = state_dict.pop(key)
    x_dim = joined.shape[1] - joined.shape[0]  # the joined input is [x, c] with c as wide as the layer
    state_dict[prefix + "input_layer.weight_x"] = joined[:, :x_dim]
    state_dict[prefix + "input_layer.weight_c"] = joined[:, x_dim:]
    state_dict[prefix + "input_layer.bias"] = bias
