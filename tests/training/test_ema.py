import pytest
import torch
from torch import nn

from scaleflow.training.ema import EMA, ema_decay_at


def test_decay_warmup_formula():
    assert ema_decay_at(0, 0.999) == pytest.approx(1 / 10)
    assert ema_decay_at(10, 0.999) == pytest.approx(11 / 20)
    assert ema_decay_at(100_000, 0.999) == 0.999  # capped by the configured decay


def test_update_is_the_exponential_average():
    model = nn.Linear(3, 2).double()  # float64: the comparison is about the formula, not rounding
    ema = EMA(model, decay=0.9)
    start = [p.detach().clone() for p in model.parameters()]
    expected = [p.clone() for p in start]
    for step in range(50):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        d = ema.update(model, step)
        assert d == ema_decay_at(step, 0.9)
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters())]
    for got, want in zip(ema.shadow.parameters(), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    # a constant model is a fixed point
    before = [p.clone() for p in ema.shadow.parameters()]
    with torch.no_grad():
        for e, p in zip(ema.shadow.parameters(), model.parameters()):
            p.copy_(e)
    ema.update(model, 1000)
    for got, want in zip(ema.shadow.parameters(), before):
        torch.testing.assert_close(got, want)


def test_shadow_has_no_grad_and_state_round_trips():
    model = nn.Linear(3, 2)
    ema = EMA(model, 0.99)
    assert not any(p.requires_grad for p in ema.shadow.parameters())
    other = EMA(nn.Linear(3, 2), 0.99)
    other.load_state_dict(ema.state_dict())
    for a, b in zip(other.shadow.parameters(), ema.shadow.parameters()):
        assert torch.equal(a, b)


def test_update_follows_a_model_whose_tensors_were_replaced():
    # The EMA remembers the model's parameters between steps; moving or re-typing the model
    # (which swaps the tensors behind them) must not leave it averaging the old ones.
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.5)
    ema.update(model, 1000)
    model.double()
    ema.shadow.double()
    with torch.no_grad():
        model.weight.fill_(1.0)
    before = ema.shadow.weight.clone()
    ema.update(model, 1000)
    torch.testing.assert_close(ema.shadow.weight, 0.5 * before + 0.5)


def test_buffers_are_copied_even_after_the_model_replaced_them():
    model = nn.BatchNorm1d(3)  # running statistics are buffers: copied, not averaged
    ema = EMA(model, decay=0.5)
    ema.update(model, 1000)
    model.double()  # replaces every buffer object (parameters keep theirs)
    ema.shadow.double()
    model.running_mean.fill_(2.0)
    model.num_batches_tracked.fill_(7)
    ema.update(model, 1000)
    assert torch.equal(ema.shadow.running_mean, torch.full((3,), 2.0, dtype=torch.float64))
    assert int(ema.shadow.num_batches_tracked) == 7
