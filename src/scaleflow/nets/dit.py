"""DiT velocity network: AdaLN-Zero transformer blocks over the embedding as a single token."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scaleflow.nets.time_embedding import TimestepEmbedder, modulate
from scaleflow.times import broadcast_time


class Attention(nn.Module):
    """Multi-head self-attention with fused qkv, through `scaled_dot_product_attention`.

    Over a single token (how DiT sees an embedding) the softmax over one key is exactly 1, so the
    output is the value projection: q, k and the attention kernel are skipped (their gradients are
    zero either way), which saves about a sixth of a DiT step. Longer sequences take the full path.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, S, h] -> [B, S, h]."""
        B, S, h = x.shape
        if S == 1:
            return self.proj(F.linear(x, self.qkv.weight[2 * h:], self.qkv.bias[2 * h:]))
        q, k, v = self.qkv(x).view(B, S, 3, self.num_heads, h // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(B, S, h))


class DiTBlock(nn.Module):
    """Pre-norm attention + MLP, each shifted, scaled and gated by the time embedding."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, mlp_dropout: float = 0.0):
        super().__init__()
        self.mlp_dropout = mlp_dropout
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: [B, S, h], c: [B, h] -> [B, S, h]."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        h = modulate(self.norm2(x), shift2, scale2)
        if self.mlp_dropout and self.training:  # in the MLP's hidden layer only, never in attention
            h = self.mlp[2](F.dropout(self.mlp[1](self.mlp[0](h)), self.mlp_dropout, training=True))
        else:
            h = self.mlp(h)
        return x + gate2[:, None] * h


class FinalLayer(nn.Module):
    """AdaLN (shift, scale) then a projection back to the embedding space."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiTVelocityNetwork(nn.Module):
    """DiT (Peebles & Xie, 2023) with AdaLN-Zero, on one token.

    Structure, for `hidden_dim=h`, `num_layers=L`, `input_dim=D`:
        t -> sinusoidal(time_embed_dim) -> Linear -> SiLU -> Linear -> c: [B, h]
        x: [B, D] -> Linear(D, h) -> [B, 1, h] -> L x DiTBlock(h, heads) -> final AdaLN -> Linear(h, D)
    Each block: LayerNorm (no affine) -> shift/scale -> attention -> gate, then the same around an
    MLP (h -> 4h -> h); shift/scale/gate come from SiLU -> Linear(h, 6h) of c.

    Parameters at D=1024: tiny (256, 2, 4 heads) 3,155,712; small (384, 3, 6) 9,309,952;
    base (512, 4, 8) 20,874,752.
    """

    def __init__(
        self,
        input_dim: int = 1024,
        hidden_dim: int = 384,
        num_layers: int = 3,
        num_heads: int = 6,
        time_embed_dim: int = 256,
        mlp_ratio: float = 4.0,
        mlp_dropout: float = 0.0,
    ):
        super().__init__()
        if not 0 <= mlp_dropout < 1:
            raise ValueError(f"mlp_dropout must be in [0, 1); got {mlp_dropout}")
        if hidden_dim % num_heads:
            raise ValueError(f"dit needs num_heads to divide hidden_dim; got hidden_dim={hidden_dim}, num_heads={num_heads}")
        self.input_dim = input_dim
        self.time_embed = TimestepEmbedder(hidden_dim, time_embed_dim)
        self.input_proj = nn.Linear(input_dim, hidden_dim)
        self.blocks = nn.ModuleList(DiTBlock(hidden_dim, num_heads, mlp_ratio, mlp_dropout) for _ in range(num_layers))
        self.final_layer = FinalLayer(hidden_dim, input_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # Xavier for every linear layer, as in DiT; the time MLP gets a small normal init.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for layer in self.time_embed.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)
        # AdaLN-Zero: every block starts as the identity, and the output starts at exactly zero.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """x: [B, D], t: scalar, [B] or [B, 1] -> v: [B, D]."""
        c = self.time_embed(broadcast_time(t, x))
        h = self.input_proj(x)[:, None]
        for block in self.blocks:
            h = block(h, c)
        return self.final_layer(h, c)[:, 0]
