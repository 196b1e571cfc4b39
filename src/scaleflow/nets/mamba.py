"""DiM-style ("Diffusion Mamba") velocity network for flat embedding vectors.

The `[B, D]` vector is cut into `ceil(D / chunk_size)` tokens, embedded, run through
bidirectional Mamba blocks with AdaLN-Zero time conditioning (as in DiT), and projected
back. Every residual branch and the output layer start at zero, so at initialization the
network predicts v = 0 and each block is the identity.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scaleflow.nets.selective_scan import selective_scan
from scaleflow.nets.time_embedding import TimestepEmbedder, modulate
from scaleflow.times import broadcast_time


def _at_least_fp32(p: torch.Tensor) -> torch.Tensor:
    return p if p.dtype in (torch.float32, torch.float64) else p.float()


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal depthwise conv: `x: [B, d, L]`, `weight: [d, 1, k]` -> `[B, d, L]`.

    Equal to `nn.Conv1d(groups=d, padding=k-1)` cropped to L, written as k shifted
    multiply-adds: for tiny k and L this is faster than grouped conv on CPU (whose float64
    path loops over every channel).
    """
    k, L = weight.shape[-1], x.shape[-1]
    xp = F.pad(x, (k - 1, 0))
    w = weight[:, 0, :]                                                   # [d, k]
    y = xp[..., k - 1:] * w[:, k - 1, None]
    for j in range(k - 1):
        y = y + xp[..., j:j + L] * w[:, j, None]
    return y if bias is None else y + bias[:, None]


class SSMDirection(nn.Module):
    """One scan direction of a Mamba mixer: causal depthwise conv -> SiLU -> selective scan.

    Holds the per-direction parameters (conv, x_proj, dt_proj, A_log, D); the in/out
    projections are shared by both directions and live in `BiMambaMixer`.
    """

    def __init__(self, d_inner: int, state_dim: int, dt_rank: int, conv_kernel: int,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.state_dim, self.dt_rank = state_dim, dt_rank
        # Depthwise conv weights in Mamba's layout [d_inner, 1, k]; applied by causal_conv1d.
        self.conv1d = nn.Conv1d(d_inner, d_inner, conv_kernel, groups=d_inner, padding=conv_kernel - 1)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * state_dim, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)

        # Mamba's dt init: weight ~ U(+-dt_rank^-0.5) keeps dt's variance O(1); the bias is
        # softplus^-1 of a log-uniform dt in [dt_min, dt_max], so each channel starts with
        # its own time scale.
        std = dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

        # S4D-real init: A = -(1..N) for every channel, stored as log so A stays negative.
        A = torch.arange(1, state_dim + 1, dtype=torch.float32).repeat(d_inner, 1)  # [d_inner, N]
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(d_inner))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """`x, z: [B, d_inner, L]` -> gated scan output `[B, d_inner, L]`."""
        x = F.silu(causal_conv1d(x, self.conv1d.weight, self.conv1d.bias))
        x_dbl = self.x_proj(x.transpose(1, 2))                          # [B, L, r + 2N]
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.state_dim, self.state_dim], dim=-1)
        # dt_proj's bias and the softplus are handed to the scan (fused on the CUDA kernel).
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)          # [B, d_inner, L]
        # A, D and the dt bias stay in >= fp32 even in a half-precision model (as in Mamba).
        A = -torch.exp(_at_least_fp32(self.A_log))
        return selective_scan(
            x, delta, A, B.transpose(1, 2), C.transpose(1, 2), _at_least_fp32(self.D), z=z,
            delta_bias=_at_least_fp32(self.dt_proj.bias), delta_softplus=True,
        )


class BiMambaMixer(nn.Module):
    """Bidirectional Mamba mixer: `[B, L, H]` -> `[B, L, H]`.

    A causal scan only lets token i see tokens <= i; the chunks of an embedding have no
    natural order, so a second scan runs over the flipped sequence and the two are summed.
    """

    def __init__(self, hidden_dim: int, state_dim: int = 16, expand: int = 2, conv_kernel: int = 4):
        super().__init__()
        d_inner = expand * hidden_dim
        dt_rank = math.ceil(hidden_dim / 16)
        self.in_proj = nn.Linear(hidden_dim, 2 * d_inner, bias=False)   # x and gate z
        self.forward_ssm = SSMDirection(d_inner, state_dim, dt_rank, conv_kernel)
        self.backward_ssm = SSMDirection(d_inner, state_dim, dt_rank, conv_kernel)
        self.out_proj = nn.Linear(d_inner, hidden_dim, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(h).transpose(1, 2)                              # [B, 2*d_inner, L]
        x, z = xz.chunk(2, dim=1)
        y = self.forward_ssm(x, z)
        y_b = self.backward_ssm(x.flip(-1), z.flip(-1)).flip(-1)
        return self.out_proj((y + y_b).transpose(1, 2))


class DiMBlock(nn.Module):
    """AdaLN-Zero block: `h + gate1 * mixer(adaLN(h))`, then `h + gate2 * mlp(adaLN(h))`."""

    def __init__(self, hidden_dim: int, state_dim: int, expand: int, conv_kernel: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_dim, elementwise_affine=False, eps=1e-6)
        self.mixer = BiMambaMixer(hidden_dim, state_dim, expand, conv_kernel)
        self.norm2 = nn.LayerNorm(hidden_dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_dim, mlp_ratio * hidden_dim), nn.GELU(),
            nn.Linear(mlp_ratio * hidden_dim, hidden_dim),
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, 6 * hidden_dim))
        # Zero gates (and shifts/scales) make the block the identity at init.
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """`h: [B, L, H]`, `c: [B, H]` -> `[B, L, H]`."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        h = h + gate1.unsqueeze(1) * self.mixer(modulate(self.norm1(h), shift1, scale1))
        h = h + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(h), shift2, scale2))
        return h


class FinalLayer(nn.Module):
    """AdaLN (no affine LayerNorm, shift/scale from time) + zero-initialized linear to chunks."""

    def __init__(self, hidden_dim: int, chunk_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, 2 * hidden_dim))
        self.linear = nn.Linear(hidden_dim, chunk_size)
        for layer in (self.adaLN_modulation[-1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """`h: [B, L, H]`, `c: [B, H]` -> `[B, L, chunk_size]`."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(h), shift, scale))


class MambaVelocityNetwork(nn.Module):
    """Velocity field `v(x, t)` for `x: [B, input_dim]` built from bidirectional Mamba blocks.

    Args:
        input_dim: length D of the embedding vectors.
        hidden_dim: token width H.
        num_layers: number of `DiMBlock`s.
        state_dim: SSM state size N.
        chunk_size: entries of x per token; D is zero-padded up to a multiple of it.
        time_embed_dim: number of sinusoidal time features fed to the time MLP.
        expand: mixer inner width is `expand * hidden_dim`.
        conv_kernel: width of the causal depthwise conv in each scan direction.
    """

    def __init__(self, input_dim: int = 1024, hidden_dim: int = 256, num_layers: int = 4, state_dim: int = 16,
                 chunk_size: int = 64, time_embed_dim: int = 256, expand: int = 2, conv_kernel: int = 4):
        super().__init__()
        self.input_dim, self.chunk_size = input_dim, chunk_size
        self.num_tokens = math.ceil(input_dim / chunk_size)
        self.patch_embed = nn.Linear(chunk_size, hidden_dim)
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_tokens, hidden_dim) * 0.02)
        self.t_embedder = TimestepEmbedder(hidden_dim, time_embed_dim)
        self.blocks = nn.ModuleList(
            DiMBlock(hidden_dim, state_dim, expand, conv_kernel) for _ in range(num_layers)
        )
        self.final_layer = FinalLayer(hidden_dim, chunk_size)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """`x: [B, input_dim]`, `t`: float, 0-d, `[B]` or `[B, 1]` -> velocity `[B, input_dim]`."""
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected x of shape [B, {self.input_dim}], got {tuple(x.shape)}")
        batch = x.shape[0]
        c = self.t_embedder(broadcast_time(t, x))                         # [B, H]
        pad = self.num_tokens * self.chunk_size - self.input_dim
        tokens = F.pad(x, (0, pad)).view(batch, self.num_tokens, self.chunk_size)
        h = self.patch_embed(tokens) + self.pos_embed                     # [B, L, H]
        for block in self.blocks:
            h = block(h, c)
        out = self.final_layer(h, c).reshape(batch, -1)                   # [B, L * chunk]
        return out[:, : self.input_dim]
