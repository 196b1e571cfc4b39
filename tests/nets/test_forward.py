"""Every architecture x scale runs forward and backward on the CPU with sane outputs."""
import pytest
import torch

from scaleflow.nets import SCALES, create_model

ARCHS = ("mlp", "dit", "unet", "mamba")


def _perturb_outputs(model):
    # Zero-initialized output layers give zero gradients upstream; shake everything a little
    # so the backward pass exercises every path.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("input_dim", [384, 1024])
def test_forward_backward_finite(arch, scale, input_dim):
    torch.manual_seed(0)
    model = create_model(arch, scale, input_dim=input_dim)
    for batch in (1, 7):
        x, t = torch.randn(batch, input_dim), torch.rand(batch)
        v = model(x, t)
        assert v.shape == (batch, input_dim) and torch.isfinite(v).all()
    _perturb_outputs(model)
    x, t = torch.randn(7, input_dim), torch.rand(7)
    model(x, t).square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(int(g.abs().sum() > 0) for g in grads) >= 0.9 * len(grads)  # gradient reaches the network


@pytest.mark.parametrize("arch", ARCHS)
def test_initial_velocity_is_zero_or_small(arch):
    torch.manual_seed(0)
    model = create_model(arch, "tiny", input_dim=384)
    v = model(torch.randn(16, 384), torch.rand(16))
    assert v.abs().max() < (0.5 if arch == "mlp" else 1e-12)  # mlp: N(0, 0.01) output weights


@pytest.mark.parametrize("arch", ARCHS)
def test_deterministic_under_seed(arch):
    outputs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = create_model(arch, "tiny", input_dim=384)
        _perturb_outputs(model)
        outputs.append(model(torch.randn(5, 384), torch.rand(5)))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("arch", ARCHS)
def test_time_shapes_agree(arch):
    torch.manual_seed(0)
    model = create_model(arch, "tiny", input_dim=384)
    _perturb_outputs(model)
    x = torch.randn(4, 384)
    reference = model(x, torch.full((4,), 0.3))
    for t in (0.3, torch.tensor(0.3), torch.full((4, 1), 0.3)):
        assert torch.allclose(model(x, t), reference, atol=1e-6)
    assert not torch.allclose(model(x, 0.7), reference)  # time matters
    with pytest.raises(ValueError, match="t must be a scalar"):
        model(x, torch.rand(3))
