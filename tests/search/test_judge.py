"""The judge (valid: as close to the reference as 95% of real rows; novel: no near-copy of a reference row, by
distance and by angle), against thresholds and neighbours worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from scaleflow.search.judge import JUDGE_VERSION, CandidateJudge, angle_between, best_counted

DIM = 12  # the tiny problem's (tests/search/conftest.py)


@pytest.fixture(scope="module")
def big_judge(tiny_data, rows_of) -> CandidateJudge:
    """Thresholds from 1000 held-out rows, so the share of fresh real rows that pass is tight around 95%."""
    return CandidateJudge(tiny_data.reference, rows_of(1000, seed=1))


def nearest_cosines_by_hand(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    x, reference = x.double(), reference.double()
    cos = (x / x.norm(dim=1, keepdim=True)) @ (reference / reference.norm(dim=1, keepdim=True)).T
    return cos.max(1).values


def test_thresholds_by_hand(tiny_data, problem):
    judge = problem.judge
    real = nearest_cosines_by_hand(tiny_data.pool, tiny_data.reference)
    assert judge.validity_threshold == pytest.approx(float(torch.quantile(real, 0.05)), abs=1e-6)
    # Half the (lower) median spacing of the reference rows: the memorization rule.
    d = torch.cdist(tiny_data.reference.double(), tiny_data.reference.double())
    d.fill_diagonal_(float("inf"))
    spacing = d.min(1).values
    assert judge.novelty_threshold == pytest.approx(0.5 * float(spacing.median()), rel=1e-5)
    # The same rule with angles: half the (lower) median angle to the most cosine-similar other reference row.
    unit = torch.nn.functional.normalize(tiny_data.reference.double(), dim=1)
    cosines = unit @ unit.T
    cosines.fill_diagonal_(-2.0)
    angles = torch.arccos(cosines.max(1).values.clamp(-1, 1))
    assert judge.novelty_angle == pytest.approx(0.5 * float(angles.median()), rel=1e-4)
    assert judge.novelty_cosine == pytest.approx(math.cos(judge.novelty_angle), abs=1e-15)
    # The pool set the threshold: 95 or 96 of its 100 rows reach it (linear interpolation at the 5th percentile).
    assert judge.real_validity in (0.95, 0.96)
    assert judge.describe() == {"validity_threshold": judge.validity_threshold, "real_validity": judge.real_validity,
                                "novelty_threshold": judge.novelty_threshold, "novelty_angle": judge.novelty_angle,
                                "novelty_cosine": judge.novelty_cosine, "reference_rows": 300, "validity_rows": 100,
                                "judge_version": JUDGE_VERSION}


def test_judging_the_threshold_rows_agrees_with_the_threshold(tiny_data, problem):
    verdicts = problem.judge(tiny_data.pool)
    assert float(verdicts.valid.double().mean()) == problem.judge.real_validity


def test_fresh_real_rows_are_valid_about_95_percent_and_novel(big_judge, rows_of):
    fresh = rows_of(2000, seed=2)
    verdicts = big_judge(fresh)
    valid = float(verdicts.valid.double().mean())
    assert 0.92 <= valid <= 0.98, valid
    assert big_judge.real_validity == pytest.approx(0.95, abs=0.002)
    # Fresh rows are rarely within half the median spacing of a reference row.
    assert float(verdicts.novel.double().mean()) >= 0.85
    assert torch.equal(verdicts.counts, verdicts.valid & verdicts.novel)


def test_quantile_moves_the_threshold(tiny_data, rows_of):
    judge = CandidateJudge(tiny_data.reference, rows_of(1000, seed=1), quantile=0.5)
    assert judge.real_validity == pytest.approx(0.5, abs=0.002)
    share = float(judge(rows_of(2000, seed=2)).valid.double().mean())
    assert 0.44 <= share <= 0.56, share


def test_copies_of_reference_rows_are_valid_but_not_novel(tiny_data, problem):
    rows = torch.tensor([0, 17, 299])
    copies = tiny_data.reference[rows]
    verdicts = problem.judge(copies)
    assert verdicts.valid.all() and not verdicts.novel.any() and not verdicts.counts.any()
    assert verdicts.nearest_distance.tolist() == [0.0, 0.0, 0.0]
    assert verdicts.nearest_rows[:, 0].tolist() == rows.tolist()
    assert torch.allclose(verdicts.nearest_cosine, torch.ones(3), atol=1e-6)
    # A near-copy (a tenth of the novelty threshold away) is not novel either; a point a few spacings away is.
    g = torch.Generator().manual_seed(0)
    step = torch.nn.functional.normalize(torch.randn(3, DIM, generator=g), dim=1)
    near = problem.judge(copies + 0.1 * problem.judge.novelty_threshold * step)
    assert not near.novel.any()
    far = problem.judge(copies + 3 * problem.judge.novelty_threshold * step)
    assert far.nearest_distance.min() >= problem.judge.novelty_threshold and far.novel.all()


def test_points_off_the_data_are_invalid(tiny_data, problem):
    judge = problem.judge
    g = torch.Generator().manual_seed(0)
    random_directions = torch.randn(50, DIM, generator=g)  # the data live near a 3-dim affine subspace
    assert not judge(random_directions).valid.any()
    assert not judge(-tiny_data.pool[:10]).valid.any()
    # A row pushed far along a direction orthogonal to its own.
    row = tiny_data.pool[:5]
    away = torch.randn(5, DIM, generator=g)
    away -= (away * row).sum(1, keepdim=True) / (row * row).sum(1, keepdim=True) * row
    pushed = row + 3 * row.norm(dim=1, keepdim=True) * torch.nn.functional.normalize(away, dim=1)
    verdicts = judge(pushed)
    assert not verdicts.valid.any() and verdicts.novel.all()
    assert (verdicts.nearest_cosine.double() < judge.validity_threshold).all()


def test_rescaled_copies_of_training_rows_are_not_novel(tiny_data, problem):
    """Validity looks at directions only, so 3x a training row is as valid as the row; being far away it
    passed the distance rule, and counted. The angle rule catches it: cosine 1, angle 0, not novel."""
    for factor in (3.0, 0.2, 10.0):
        rescaled = factor * tiny_data.reference[:20]
        verdicts = problem.judge(rescaled)
        assert verdicts.valid.all()
        assert (verdicts.nearest_distance >= problem.judge.novelty_threshold).all()  # the distance rule alone: novel
        assert float(verdicts.nearest_angle.max()) < 1e-6
        assert not verdicts.novel.any() and not verdicts.counts.any()


def test_rescaled_real_rows_are_judged_as_the_rows(tiny_data, problem):
    """A rescaled held-out row has the row's direction: valid and novel exactly when the row is by angle."""
    rows = tiny_data.pool[:20]
    plain, scaled = problem.judge(rows), problem.judge(10 * rows)
    assert torch.equal(scaled.valid, plain.valid)
    assert torch.equal(scaled.novel, plain.nearest_angle >= problem.judge.novelty_angle)
    assert scaled.novel.float().mean() >= 0.85


def test_angle_between_is_exact_near_zero():
    x = torch.tensor([[1.0, 0.0], [1.0, 1e-9], [0.0, 2.0], [-1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[5.0, 0.0], [1.0, 0.0], [3.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert angle_between(x, y).tolist() == pytest.approx([0.0, 1e-9, math.pi / 2, math.pi], rel=1e-9, abs=1e-15)


def test_held_out_rows_stay_novel_at_their_previous_rate(big_judge, rows_of):
    """Adding the angle rule changes little for real rows: nearly every fresh row the distance rule calls novel
    is novel by angle too (the measured effect on the built-in data is in `search/judge.py`'s docstring)."""
    verdicts = big_judge(rows_of(2000, seed=2))
    by_distance = verdicts.nearest_distance >= big_judge.novelty_threshold
    assert float(verdicts.novel.double().mean()) >= float(by_distance.double().mean()) - 0.05
    assert float(verdicts.novel.double().mean()) >= 0.85


def test_with_held_out_keeps_the_novelty_thresholds(tiny_data, problem, rows_of):
    other = rows_of(200, seed=5)
    judge = problem.judge.with_held_out(other)
    fresh = CandidateJudge(tiny_data.reference, other)
    assert judge.validity_threshold == fresh.validity_threshold
    assert judge.validity_threshold != problem.judge.validity_threshold
    assert (judge.novelty_threshold, judge.novelty_angle) == (fresh.novelty_threshold, fresh.novelty_angle)
    assert judge.describe() == fresh.describe()


def test_verdict_fields_match_brute_force(tiny_data, problem, rows_of):
    g = torch.Generator().manual_seed(3)
    x = torch.cat([rows_of(20, seed=9), torch.randn(5, DIM, generator=g) + 5])
    verdicts = problem.judge(x)
    ref = tiny_data.reference.double()
    cos = torch.nn.functional.normalize(x.double(), dim=1) @ torch.nn.functional.normalize(ref, dim=1).T
    top = cos.topk(3, dim=1)
    assert verdicts.nearest_rows.shape == (25, 3) and verdicts.nearest_cosines.shape == (25, 3)
    assert torch.allclose(verdicts.nearest_cosines.double(), top.values, atol=1e-6)
    assert torch.equal(verdicts.nearest_cosine, verdicts.nearest_cosines[:, 0])
    distance = torch.cdist(x.double(), ref).min(1).values
    assert torch.allclose(verdicts.nearest_distance.double(), distance, rtol=1e-5, atol=1e-5)
    assert torch.equal(verdicts.valid, verdicts.nearest_cosine.double() >= problem.judge.validity_threshold)
    angle = torch.arccos((torch.nn.functional.normalize(x.double(), dim=1)
                          * torch.nn.functional.normalize(ref[verdicts.nearest_rows[:, 0]], dim=1)).sum(1).clamp(-1, 1))
    assert torch.allclose(verdicts.nearest_angle, angle, atol=1e-6)
    assert torch.equal(verdicts.novel, (verdicts.nearest_distance >= problem.judge.novelty_threshold)
                       & (verdicts.nearest_angle >= problem.judge.novelty_angle))


def test_best_counted():
    scores = torch.tensor([0.9, 0.5, 0.7, 0.1], dtype=torch.float64)
    assert best_counted(scores, torch.tensor([False, True, True, False])) == 0.7
    assert best_counted(scores, torch.tensor([True, True, True, True])) == 0.9
    assert best_counted(scores, torch.zeros(4, dtype=torch.bool)) is None
    assert best_counted(torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.bool)) is None
    assert best_counted(torch.tensor([-3.0, -2.0]), torch.tensor([True, False])) == -3.0
