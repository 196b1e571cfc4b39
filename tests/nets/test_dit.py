"""DiT attention: the single-token shortcut is exactly what full attention computes."""
import torch
import torch.nn.functional as F

from scaleflow.nets.dit import Attention


def _full_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    B, S, h = x.shape
    q, k, v = attn.qkv(x).view(B, S, 3, attn.num_heads, h // attn.num_heads).permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(q, k, v)
    return attn.proj(y.transpose(1, 2).reshape(B, S, h))


def test_single_token_attention_equals_the_full_kernel():
    torch.manual_seed(0)
    attn = Attention(48, num_heads=6)
    x = torch.randn(5, 1, 48)
    torch.testing.assert_close(attn(x), _full_attention(attn, x), rtol=1e-6, atol=1e-6)


def test_single_token_attention_gives_q_and_k_no_gradient_and_v_the_full_one():
    torch.manual_seed(0)
    attn = Attention(48, num_heads=6)
    x = torch.randn(5, 1, 48)
    attn(x).square().sum().backward()
    shortcut = attn.qkv.weight.grad.clone()
    attn.zero_grad()
    _full_attention(attn, x).square().sum().backward()
    full = attn.qkv.weight.grad
    assert torch.equal(shortcut[:96], torch.zeros(96, 48))  # q and k rows: softmax over one key is constant
    assert full[:96].abs().max() < 1e-5  # ... which the kernel also finds, up to rounding
    torch.testing.assert_close(shortcut[96:], full[96:], rtol=1e-5, atol=1e-6)


def test_longer_sequences_still_attend():
    torch.manual_seed(0)
    attn = Attention(48, num_heads=6)
    x = torch.randn(5, 3, 48)
    out = attn(x)
    torch.testing.assert_close(out, _full_attention(attn, x))
    values_only = attn.proj(F.linear(x, attn.qkv.weight[96:], attn.qkv.bias[96:]))
    assert (out - values_only).abs().max() > 1e-3  # tokens mix: not the single-token shortcut
