import math

import pytest
import torch

from scaleflow.flows.time_sampling import TimeSampler, make_time_sampler


def test_uniform_moments_and_range():
    g = torch.Generator().manual_seed(0)
    t = TimeSampler().sample(200_000, "cpu", generator=g)
    assert t.shape == (200_000,) and t.dtype == torch.float32
    assert t.min() >= 0 and t.max() < 1
    assert abs(t.mean().item() - 0.5) < 0.005
    assert abs(t.var().item() - 1 / 12) < 0.002


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (-0.5, 0.7), (1.0, 2.0)])
def test_logit_normal_logit_moments(mean, std):
    g = torch.Generator().manual_seed(1)
    t = TimeSampler.logit_normal(mean, std).sample(200_000, generator=g, dtype=torch.float64)
    assert t.dtype == torch.float64
    assert t.min() > 0 and t.max() < 1
    z = torch.logit(t)
    assert abs(z.mean().item() - mean) < 0.02
    assert abs(z.std().item() - std) < 0.02 * std
    # Logit-normal(0, 1) puts more mass in the middle than uniform (P[0.25<t<0.75] = 0.5 for uniform).
    if mean == 0.0 and std == 1.0:
        mid = ((t > 0.25) & (t < 0.75)).double().mean().item()
        expected = math.erf(math.log(3) / math.sqrt(2))  # P[|z| < logit(0.75)]
        assert abs(mid - expected) < 0.01 and mid > 0.7


@pytest.mark.parametrize("name", ["uniform", "logit_normal"])
def test_seeded_generator_is_deterministic(name):
    s = make_time_sampler(name)
    a = s.sample(64, generator=torch.Generator().manual_seed(7))
    b = s.sample(64, generator=torch.Generator().manual_seed(7))
    c = s.sample(64, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_make_time_sampler_names_and_errors():
    s = make_time_sampler("logit-normal", mean=0.3, std=0.5)
    assert (s.name, s.mean, s.std) == ("logit_normal", 0.3, 0.5)
    assert make_time_sampler("uniform").name == "uniform"
    with pytest.raises(ValueError, match="uniform.*logit_normal"):
        make_time_sampler("beta")
    with pytest.raises(ValueError):
        make_time_sampler("uniform", mean=1.0)
    with pytest.raises(ValueError):
        TimeSampler.logit_normal(std=0.0)
