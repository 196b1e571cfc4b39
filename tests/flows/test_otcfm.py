import numpy as np
import ot
import pytest
import torch

from scaleflow.flows.otcfm import OTCFM


def _sqcost(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).numpy()


def _batch(seed, b, d=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64) * 1.5 + 0.5


def _rows_match(perm_x0: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Index of each row of perm_x0 in x0 (exact equality)."""
    eq = (perm_x0[:, None, :] == x0[None, :, :]).all(-1)
    assert (eq.sum(1) == 1).all(), "every coupled row must be one original row"
    return eq.double().argmax(1)


@pytest.mark.parametrize("b,seed", [(4, 0), (7, 1), (12, 2), (16, 3)])
def test_exact_coupling_is_optimal_permutation(b, seed):
    x0, x1 = _batch(seed, b)
    c0, c1 = OTCFM().couple(x0, x1)
    assert torch.equal(c1, x1)  # data order kept
    idx = _rows_match(c0, x0)
    assert sorted(idx.tolist()) == list(range(b))  # every noise row used once
    cost = ((c0 - c1) ** 2).sum(1).mean().item()
    optimum = ot.emd2(ot.unif(b), ot.unif(b), _sqcost(x0, x1))
    assert cost == pytest.approx(optimum, rel=1e-9, abs=1e-12)
    identity = ((x0 - x1) ** 2).sum(1).mean().item()
    assert cost <= identity + 1e-12


def test_exact_coupling_strictly_improves_a_random_batch():
    x0, x1 = _batch(10, 64, d=2)
    c0, c1 = OTCFM().couple(x0, x1)
    assert ((c0 - c1) ** 2).sum(1).mean() < 0.8 * ((x0 - x1) ** 2).sum(1).mean()


def test_recovers_known_permutation():
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(16, 8, generator=g, dtype=torch.float64)
    perm = torch.randperm(16, generator=g)
    x1 = x0[perm] + 1e-3  # data row j is noise row perm[j], shifted a hair
    c0, c1 = OTCFM().couple(x0, x1)
    torch.testing.assert_close(c0, x0[perm], rtol=0, atol=0)
    torch.testing.assert_close(c1, x1, rtol=0, atol=0)
    i, j = OTCFM().pair_indices(x0, x1)
    assert torch.equal(i, perm) and torch.equal(j, torch.arange(16))


def test_path_uses_coupled_pairs():
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(8, 4, generator=g, dtype=torch.float64)
    perm = torch.randperm(8, generator=g)
    x1 = x0[perm] + 0.01
    t = torch.full((8,), 0.5, dtype=torch.float64)
    _, xt, ut = OTCFM().sample_location_and_conditional_flow(x0, x1, t)
    torch.testing.assert_close(ut, torch.full_like(ut, 0.01), rtol=0, atol=1e-12)
    torch.testing.assert_close(xt, x0[perm] + 0.005, rtol=0, atol=1e-12)


def test_sinkhorn_small_reg_approaches_exact():
    x0, x1 = _batch(7, 12)
    m = _sqcost(x0, x1)
    exact = ot.emd2(ot.unif(12), ot.unif(12), m)
    costs = []
    for reg in (0.1, 0.01, 0.001):
        plan = OTCFM(method="sinkhorn", reg=reg).transport_plan(x0, x1)
        np.testing.assert_allclose(plan.sum(1), 1 / 12, atol=1e-3)
        np.testing.assert_allclose(plan.sum(0), 1 / 12, atol=1e-3)
        costs.append(float((plan * m).sum()))
    # Entropic cost decreases toward the exact optimum as reg shrinks.
    assert costs[0] > costs[1] > costs[2] >= exact - 1e-9
    assert costs[0] > 1.3 * exact
    assert costs[2] == pytest.approx(exact, rel=0.01)
    # Pairs sampled from the small-reg plan cost about the exact optimum.
    x0s, x1s = OTCFM(method="sinkhorn", reg=0.001).couple(x0, x1, generator=torch.Generator().manual_seed(0))
    assert ((x0s - x1s) ** 2).sum(1).mean().item() == pytest.approx(exact, rel=0.05)


def test_sinkhorn_tiny_reg_does_not_underflow():
    x0, x1 = _batch(8, 8)
    plan = OTCFM(method="sinkhorn", reg=1e-4).transport_plan(x0, x1)
    assert np.all(np.isfinite(plan)) and plan.sum() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("replace", [False, True])
def test_sinkhorn_sampling_is_seeded(replace):
    x0, x1 = _batch(9, 16)
    f = OTCFM(method="sinkhorn", reg=0.5, replace=replace)
    a = f.pair_indices(x0, x1, generator=torch.Generator().manual_seed(1))
    b = f.pair_indices(x0, x1, generator=torch.Generator().manual_seed(1))
    c = f.pair_indices(x0, x1, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]))
    assert a[0].shape == (16,)
    if not replace:  # no plan cell drawn twice
        assert len(set(zip(a[0].tolist(), a[1].tolist()))) == 16


def test_exact_is_deterministic_and_dtype_preserving():
    x0, x1 = _batch(11, 10)
    x0, x1 = x0.float(), x1.float()
    a0, a1 = OTCFM().couple(x0, x1, generator=torch.Generator().manual_seed(0))
    b0, b1 = OTCFM().couple(x0, x1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a0, b0) and torch.equal(a1, b1) and a0.dtype == torch.float32


def test_unequal_batch_sizes_sample_from_plan():
    x0, _ = _batch(12, 12)
    _, x1 = _batch(13, 8)
    c0, c1 = OTCFM().couple(x0, x1, generator=torch.Generator().manual_seed(0))
    assert c0.shape == (8, 3) and c1.shape == (8, 3)
    _rows_match(c0, x0)
    _rows_match(c1, x1)


def test_bad_method():
    with pytest.raises(ValueError, match="exact, sinkhorn"):
        OTCFM(method="greedy")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inputs_stay_on_device():
    x0, x1 = _batch(14, 16)
    c0, c1 = OTCFM().couple(x0.cuda(), x1.cuda())
    assert c0.is_cuda and c1.is_cuda
    ref0, _ = OTCFM().couple(x0, x1)
    torch.testing.assert_close(c0.cpu(), ref0)
    for method in ("exact", "sinkhorn"):
        t, xt, ut = OTCFM(method=method, sigma=0.1).sample_location_and_conditional_flow(
            x0.cuda(), x1.cuda(), generator=torch.Generator().manual_seed(0)
        )
        assert t.is_cuda and xt.is_cuda and ut.is_cuda
