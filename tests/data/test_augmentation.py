"""Augmentation of data rows: off is identity, each part's statistics, the order, seeds, spec parsing."""
from __future__ import annotations

import pytest
import torch
from scipy import stats

from scaleflow.data.augmentation import Augmentation, drop_mask, mixup_draws

B, D = 20_000, 8


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _x(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(B, D, generator=_gen(123), dtype=dtype)


ALL = Augmentation(mixup_alpha=0.2, noise_std=0.1, dropout_rate=0.1)


def test_off_is_identity_and_draws_nothing() -> None:
    x, g = _x(), _gen()
    state = g.get_state()
    for aug in (Augmentation(), Augmentation.parse(""), Augmentation.parse("none"), Augmentation.parse(None)):
        assert not aug.enabled and aug.to_spec() == ""
        assert aug(x, g) is x
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_dtype_kept_input_untouched_and_only_the_generator_draws(dtype: torch.dtype) -> None:
    x = _x(dtype)
    before, global_state = x.clone(), torch.get_rng_state()
    out = ALL(x, _gen())
    assert out.shape == (B, D) and out.dtype == dtype and out.device == x.device
    assert torch.isfinite(out).all()
    assert torch.equal(x, before)  # not modified in place
    assert torch.equal(torch.get_rng_state(), global_state)  # the global RNG is never touched


def test_same_seed_same_output_other_seed_differs() -> None:
    x = _x()
    assert torch.equal(ALL(x, _gen(7)), ALL(x, _gen(7)))
    assert not torch.equal(ALL(x, _gen(7)), ALL(x, _gen(8)))


def test_noise_adds_variance_std_squared() -> None:
    x = _x(torch.float64)
    diff = Augmentation(noise_std=0.1)(x, _gen()) - x
    assert abs(diff.mean().item()) < 1e-3  # 4 standard errors: 0.1 * 4 / sqrt(160000)
    assert diff.var().item() == pytest.approx(0.01, rel=0.02)
    assert (x + diff).var().item() == pytest.approx(x.var().item() + 0.01, rel=0.02)
    assert torch.equal(Augmentation(noise_std=0.0)(x, _gen()), x)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_zeroes_rate_of_entries_and_keeps_the_rest_unscaled(rate: float) -> None:
    x = _x()
    out = Augmentation(dropout_rate=rate)(x, _gen())
    dropped = out == 0
    assert dropped.float().mean().item() == pytest.approx(rate, abs=0.005)  # ~4 standard errors
    assert torch.equal(out[~dropped], x[~dropped])  # no 1/(1-rate) rescaling: kept entries are data values
    assert torch.equal(dropped, drop_mask((B, D), rate, _gen(), "cpu"))
    assert Augmentation(dropout_rate=0.0)(x, _gen()).eq(0).sum().item() == 0


@pytest.mark.parametrize("alpha", [0.2, 2.0])
def test_mixup_lambda_is_beta_and_rows_are_convex_combinations(alpha: float) -> None:
    x = _x(torch.float64)
    out = Augmentation(mixup_alpha=alpha)(x, _gen())
    lam, perm = mixup_draws(B, alpha, _gen(), "cpu")  # the same draws, replayed from the same seed
    assert torch.equal(perm.sort().values, torch.arange(B))
    assert ((lam >= 0) & (lam <= 1)).all()
    assert lam.mean().item() == pytest.approx(0.5, abs=0.012)  # 4 standard errors at alpha 0.2
    assert lam.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), abs=0.004)
    assert stats.kstest(lam.numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3  # the whole law, not two moments
    torch.testing.assert_close(out, lam[:, None] * x + (1 - lam[:, None]) * x[perm], rtol=0, atol=1e-12)


def test_mixup_black_box_on_one_hot_rows() -> None:
    # Row i of the identity mixes e_i with e_perm(i): non-negative, sums to 1, at most two entries.
    x = torch.eye(8, dtype=torch.float64)
    for seed in range(20):
        out = Augmentation(mixup_alpha=1.0)(x, _gen(seed))
        assert (out >= 0).all() and torch.allclose(out.sum(1), torch.ones(8, dtype=torch.float64))
        assert ((out > 0).sum(1) <= 2).all()
        partner = torch.where((out > 0).sum(1) == 2, out.fill_diagonal_(0).argmax(1), torch.arange(8))
        assert torch.equal(partner.sort().values, torch.arange(8))  # partners form a permutation


def test_tiny_alpha_gives_lambda_near_0_or_1() -> None:
    # Gamma(1e-3) draws underflow to 0; drawn in log space lambda still goes to the ends, not to 0/0 or 0.5.
    lam, _ = mixup_draws(B, 1e-3, _gen(), "cpu")
    assert torch.isfinite(lam).all()
    at_ends = 1 - (stats.beta.cdf(1 - 1e-6, 1e-3, 1e-3) - stats.beta.cdf(1e-6, 1e-3, 1e-3))  # 0.98628
    assert ((lam < 1e-6) | (lam > 1 - 1e-6)).float().mean().item() == pytest.approx(at_ends, abs=0.003)
    assert lam.mean().item() == pytest.approx(0.5, abs=0.02)


def test_order_is_mixup_then_noise_then_dropout() -> None:
    x = _x(torch.float64)
    out = ALL(x, _gen(3))
    g = _gen(3)  # replay the draws in the documented order
    lam, perm = mixup_draws(B, 0.2, g, "cpu")
    expected = lam[:, None] * x + (1 - lam[:, None]) * x[perm]
    expected = expected + 0.1 * torch.randn(B, D, generator=g, dtype=torch.float64)
    mask = drop_mask((B, D), 0.1, g, "cpu")
    torch.testing.assert_close(out, expected.masked_fill(mask, 0.0), rtol=0, atol=1e-12)
    # dropout last: exactly the dropped entries are exactly 0, even with noise on
    assert torch.equal(out == 0, mask)
    assert mask.float().mean().item() == pytest.approx(0.1, abs=0.005)


@pytest.mark.parametrize(("spec", "expected"), [
    ("mixup,noise", Augmentation(mixup_alpha=0.2, noise_std=0.1)),
    ("dropout", Augmentation(dropout_rate=0.1)),
    ("mixup=0.4,noise=0.05,dropout=0.2", Augmentation(0.4, 0.05, 0.2)),
    (" dropout = 0 , Mixup=1 ", Augmentation(mixup_alpha=1.0, dropout_rate=0.0)),
    ("noise=0", Augmentation(noise_std=0.0)),
])
def test_parse_and_round_trip(spec: str, expected: Augmentation) -> None:
    aug = Augmentation.parse(spec)
    assert aug == expected and aug.enabled
    assert Augmentation.parse(aug.to_spec()) == aug


def test_to_spec_is_canonical() -> None:
    assert Augmentation.parse("dropout,mixup,noise").to_spec() == "mixup=0.2,noise=0.1,dropout=0.1"
    assert Augmentation(mixup_alpha=1).to_spec() == "mixup=1.0"
    odd = Augmentation(noise_std=0.1 + 0.2)  # 0.30000000000000004 reads back bit for bit
    assert Augmentation.parse(odd.to_spec()) == odd


@pytest.mark.parametrize(("spec", "says"), [
    ("cutout", "unknown augmentation 'cutout'"),
    ("mixup,,noise", "unknown augmentation ''"),
    ("none,mixup", "unknown augmentation 'none'"),
    ("mixup=abc", "'abc' is not a number"),
    ("noise=", "'' is not a number"),
    ("mixup=0", "mixup alpha must be > 0"),
    ("mixup=-1", "mixup alpha must be > 0"),
    ("mixup=nan", "mixup must be a finite number"),
    ("noise=-0.1", "noise std must be >= 0"),
    ("noise=inf", "noise must be a finite number"),
    ("dropout=1", "dropout rate must be in [0, 1)"),
    ("dropout=-0.1", "dropout rate must be in [0, 1)"),
    ("noise,noise=0.2", "noise is given twice"),
])
def test_bad_spec_names_aug_the_part_and_what_is_allowed(spec: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        Augmentation.parse(spec)
    message = str(info.value)
    assert "\n" not in message and message.startswith("--aug ")
    assert says in message and "allowed: mixup[=alpha>0]" in message


@pytest.mark.parametrize("kwargs", [dict(mixup_alpha=0.0), dict(noise_std=-1.0), dict(dropout_rate=1.0),
                                    dict(noise_std="0.1"), dict(dropout_rate=True)])
def test_direct_construction_is_validated(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Augmentation(**kwargs)


def test_rejects_non_float_or_non_2d_rows() -> None:
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        ALL(torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        ALL(torch.zeros(4, 3, dtype=torch.int64))
