"""A Vision Transformer classifier: the model family of the optimizer scale study (design note 004).

Patches of `patch_size` pixels are embedded linearly, a class token and learned positions are added,
`depth` pre-norm transformer blocks (multi-head self-attention, MLP with ratio 4 and GELU) follow, and
the class token's final LayerNorm feeds a linear head. The five scales are the note's dim / depth /
heads; at the CIFAR-10 setting (32x32x3, patch 4, 10 classes) they have 2.7M / 10.7M / 25.3M / 56.8M /
100.9M parameters.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# scale -> (dim, depth, heads), from the design note's table
VIT_SCALES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 6, 3),
    "small": (384, 6, 6),
    "medium": (512, 8, 8),
    "large": (768, 8, 12),
    "xl": (1024, 8, 16),
}
MLP_RATIO = 4


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q / k / v / out projections (`x: [B, N, dim]`).

    Separate matrices, not one fused qkv: Muon orthogonalizes each hidden matrix on its own, and the
    scale study reports the rank of each projection. Same parameter count as `nn.MultiheadAttention`.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = (proj(x).view(b, n, self.heads, d // self.heads).transpose(1, 2) for proj in (self.q, self.k, self.v))
        return self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class ViTBlock(nn.Module):
    """Pre-norm transformer block: `x + attn(ln(x))`, then `x + mlp(ln(x))`; `x: [B, N, dim]`.

    The MLP is `fc_in -> act (GELU) -> fc_out`; the scale study hooks `mlp.act` for activation sparsity.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = MLP_RATIO):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(OrderedDict(fc_in=nn.Linear(dim, mlp_ratio * dim), act=nn.GELU(),
                                             fc_out=nn.Linear(mlp_ratio * dim, dim)))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTClassifier(nn.Module):
    """Images `[B, channels, image_size, image_size]` -> class logits `[B, num_classes]`."""

    def __init__(self, image_size: int = 32, patch_size: int = 4, channels: int = 3, num_classes: int = 10,
                 dim: int = 384, depth: int = 6, heads: int = 6, mlp_ratio: int = MLP_RATIO):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.patch_size = patch_size
        n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Linear(channels * patch_size * patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n_patches + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(ViTBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patches(self, images: Tensor) -> Tensor:
        """`[B, C, H, W]` -> `[B, (H/p)(W/p), C p p]` non-overlapping patches, row by row."""
        b, c, _, _ = images.shape
        p = self.patch_size
        x = images.unfold(2, p, p).unfold(3, p, p)  # [B, C, H/p, W/p, p, p]
        return x.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c * p * p)

    def forward(self, images: Tensor) -> Tensor:
        x = self.patch_embed(self.patches(images))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))
