import pytest
import torch

from scaleflow.flows import ICFM
from scaleflow.sampling.sample import generate, invert, reconstruction_errors, sample_noise
from scaleflow.sampling.velocity import VelocityField


def constant_field(mu):
    return lambda x, t: mu.expand_as(x)


def test_generate_follows_the_field_and_is_seeded():
    mu = torch.tensor([1.0, -2.0, 0.5])
    batch = generate(constant_field(mu), 10, 3, solver="euler", steps=4, seed=3)
    torch.testing.assert_close(batch.x, batch.x0 + mu)  # a constant field moves every point by mu
    assert batch.nfe == 4 and torch.equal(batch.x0, sample_noise(10, 3, seed=3))
    again = generate(constant_field(mu), 10, 3, solver="euler", steps=4, seed=3)
    assert torch.equal(again.x, batch.x)
    assert not torch.equal(generate(constant_field(mu), 10, 3, "euler", 4, seed=4).x, batch.x)


def test_chunks_give_the_same_samples():
    field = lambda x, t: -x * t[:, None]  # noqa: E731
    whole = generate(field, 50, 4, "rk4", 8, seed=0, batch_size=4096).x
    chunked = generate(field, 50, 4, "rk4", 8, seed=0, batch_size=7).x
    torch.testing.assert_close(whole, chunked)


def test_inversion_round_trip():
    w = torch.tensor([[0.0, -1.5], [1.5, 0.0]], dtype=torch.float64)
    field = lambda x, t: x @ w.T  # noqa: E731  a rotation: exactly invertible
    x = torch.randn(20, 2, dtype=torch.float64)
    noise = invert(field, x, "rk4", 32).x
    rotation = torch.linalg.matrix_exp(-w)  # backwards over one unit of time
    torch.testing.assert_close(noise, x @ rotation.T, atol=1e-6, rtol=0)
    errors = reconstruction_errors(field, x, "rk4", 32)
    assert errors.shape == (20,) and errors.max() < 1e-10
    assert reconstruction_errors(field, x, "euler", 4).mean() > 1e-3  # a crude solver shows up


def test_x1_prediction_becomes_the_implied_velocity():
    target = torch.tensor([[2.0, -1.0]])

    class PredictsTarget(torch.nn.Module):
        def forward(self, x, t):
            return target.expand_as(x)

    field = VelocityField(PredictsTarget(), ICFM(), prediction="x1")
    x, t = torch.tensor([[0.0, 1.0]]), torch.tensor([0.5])
    torch.testing.assert_close(field(x, t), (target - x) / 0.5)
    end = generate(field, 5, 2, "euler", 50, seed=0).x  # flows straight to the predicted point
    torch.testing.assert_close(end, target.expand(5, 2), atol=1e-2, rtol=0)
    with pytest.raises(ValueError, match="prediction"):
        VelocityField(PredictsTarget(), ICFM(), prediction="eps")


def test_noise_streams_are_independent_and_sample_keeps_plain_seeds():
    plain = torch.randn(5, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(sample_noise(5, 3, seed=7), plain)
    reflow = sample_noise(5, 3, seed=7, stream="reflow")
    assert not torch.equal(reflow, plain)
    # No seed of one stream reproduces another stream's draw (the generator keeps 32 bits of a seed).
    assert not any(torch.equal(reflow, sample_noise(5, 3, seed=s)) for s in (0, 7, 2**31 - 1))
    for bad in (-1, 2**31):
        with pytest.raises(ValueError, match="seed"):
            sample_noise(2, 2, seed=bad)


def test_noise_scale_multiplies_the_starting_noise():
    field = lambda x, t: torch.zeros_like(x)  # noqa: E731  (samples are their starting points)
    plain = generate(field, 6, 3, "euler", 2, seed=1)
    cooled = generate(field, 6, 3, "euler", 2, seed=1, noise_scale=0.5)
    torch.testing.assert_close(cooled.x, 0.5 * plain.x)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="noise-scale"):
            generate(field, 2, 3, "euler", 1, noise_scale=bad)
