"""Tests for the pure-PyTorch selective scan and the DiM-style Mamba velocity network."""
import importlib

import pytest
import torch
import torch.nn.functional as F

from scaleflow.nets.mamba import MambaVelocityNetwork

# importlib, not `import ... as`: a package re-export of the function `selective_scan`
# would shadow the submodule of the same name as an attribute of `scaleflow.nets`.
ss = importlib.import_module("scaleflow.nets.selective_scan")
mamba_mod = importlib.import_module("scaleflow.nets.mamba")

SMALL = dict(hidden_dim=32, num_layers=2, state_dim=16, chunk_size=64, time_embed_dim=32)


def naive_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Textbook recurrence, one time step at a time:
    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,  y_t = C_t . h_t + D u_t,  out = y * silu(z)."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d_inner, L = u.shape
    h = torch.zeros(batch, d_inner, A.shape[1], dtype=u.dtype)
    ys = []
    for t in range(L):
        dA = torch.exp(delta[:, :, t, None] * A[None])                   # [b, d, N]
        dBu = delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]  # [b, d, N]
        h = dA * h + dBu
        ys.append((h * C[:, None, :, t]).sum(-1))                        # [b, d]
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


def random_scan_inputs(batch, d_inner, L, N, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return dict(
        u=r(batch, d_inner, L),
        delta=torch.rand(batch, d_inner, L, generator=g, dtype=dtype) * 0.5,
        A=-torch.rand(d_inner, N, generator=g, dtype=dtype) * 4,
        B=r(batch, N, L), C=r(batch, N, L), D=r(d_inner), z=r(batch, d_inner, L),
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(2, 3, 1, 4), (3, 8, 16, 16), (1, 5, 7, 16), (2, 4, 64, 2)])
@pytest.mark.parametrize("use_D,use_z", [(False, False), (True, False), (False, True), (True, True)])
def test_scan_matches_naive(dtype, shape, use_D, use_z):
    kw = random_scan_inputs(*shape, dtype=dtype)
    if not use_D:
        kw["D"] = None
    if not use_z:
        kw["z"] = None
    expected = naive_scan(**kw)
    for grad in (False, True):  # the inference path and the autograd.Function path
        with torch.set_grad_enabled(grad):
            args = {k: (v.clone().requires_grad_(grad) if v is not None else None) for k, v in kw.items()}
            y = ss.selective_scan_torch(**args)
        assert y.dtype == dtype and y.shape == expected.shape
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_scan_delta_bias_softplus_and_dispatcher():
    kw = random_scan_inputs(2, 6, 9, 16, torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    expected = naive_scan(**kw, delta_bias=bias, delta_softplus=True)
    torch.testing.assert_close(ss.selective_scan(**kw, delta_bias=bias, delta_softplus=True), expected)
    assert ss.selective_scan_backend("cpu") == "torch"
    assert ss.selective_scan_backend("cuda") in ("torch", "mamba_ssm")
    assert isinstance(ss.mamba_ssm_available(), bool)


@pytest.mark.parametrize("L", [1, 6])
def test_scan_gradients_match_naive(L):
    """The hand-written backward agrees with autograd through the naive loop (and gradcheck)."""
    kw = random_scan_inputs(2, 3, L, 4, torch.float64, seed=1)
    bias = torch.randn(3, dtype=torch.float64)
    leaves = {k: v.clone().requires_grad_() for k, v in kw.items()}
    leaves["delta_bias"] = bias.clone().requires_grad_()
    grads = []
    for fn in (ss.selective_scan_torch, naive_scan):
        out = fn(**leaves, delta_softplus=True)
        grads.append(torch.autograd.grad(out, list(leaves.values()), grad_outputs=torch.cos(out).detach()))
    for name, a, b in zip(leaves, *grads):
        torch.testing.assert_close(a, b, msg=name)
    names = ["u", "delta", "A", "B", "C"]
    assert torch.autograd.gradcheck(lambda *a: ss.selective_scan_torch(*a), [leaves[k] for k in names])


@pytest.mark.parametrize("L", [1, 3, 16])
def test_causal_conv_matches_conv1d(L):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, 4, groups=6, padding=3).double()
    x = torch.randn(2, 6, L, dtype=torch.float64)
    torch.testing.assert_close(mamba_mod.causal_conv1d(x, conv.weight, conv.bias), conv(x)[..., :L])


def test_network_matches_naive_scan(monkeypatch):
    torch.manual_seed(0)
    net = MambaVelocityNetwork(input_dim=384, **SMALL).double()
    perturb_zero_init(net)
    x, t = torch.randn(3, 384, dtype=torch.float64), torch.rand(3, dtype=torch.float64)
    fast = net(x, t)
    monkeypatch.setattr(mamba_mod, "selective_scan", naive_scan)
    slow = net(x, t)
    assert fast.abs().max() > 1e-3  # the comparison is not trivially 0 == 0
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def perturb_zero_init(net):
    """Give every all-zero (AdaLN-Zero / output) parameter small random values."""
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.normal_(0, 0.05)


@pytest.mark.parametrize("input_dim", [384, 1024])
@pytest.mark.parametrize("batch", [1, 7])
def test_forward_backward_finite(input_dim, batch):
    torch.manual_seed(0)
    net = MambaVelocityNetwork(input_dim=input_dim, **SMALL)
    x, t = torch.randn(batch, input_dim), torch.rand(batch)
    v0 = net(x, t)
    assert v0.shape == (batch, input_dim)
    assert torch.equal(v0, torch.zeros_like(v0))  # AdaLN-Zero: exactly zero at init
    perturb_zero_init(net)
    x.requires_grad_()
    v = net(x, t)
    assert v.shape == (batch, input_dim) and torch.isfinite(v).all()
    v.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_time_formats_agree():
    torch.manual_seed(0)
    net = MambaVelocityNetwork(input_dim=384, **SMALL)
    perturb_zero_init(net)
    x = torch.randn(4, 384)
    outs = [net(x, t) for t in (0.3, torch.tensor(0.3), torch.full((4,), 0.3), torch.full((4, 1), 0.3))]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=0, atol=0)
    assert not torch.allclose(net(x, 0.7), outs[0])  # time actually matters


def test_deterministic_under_seed():
    def build_and_run():
        torch.manual_seed(123)
        net = MambaVelocityNetwork(input_dim=384, **SMALL)
        perturb_zero_init(net)
        return net(torch.randn(5, 384), torch.rand(5))

    assert torch.equal(build_and_run(), build_and_run())


def test_parameter_count_scales():
    counts = []
    for hidden_dim, num_layers in [(128, 2), (256, 4), (384, 6)]:
        net = MambaVelocityNetwork(input_dim=1024, hidden_dim=hidden_dim, num_layers=num_layers,
                                   state_dim=16, chunk_size=64)
        counts.append(sum(p.numel() for p in net.parameters()))
    assert counts[1] >= 2 * counts[0] and counts[2] >= 2 * counts[1], counts
