"""The k-diverse best on constructed candidates: the best score k pairwise-different counted candidates reach."""
import math

import pytest

from scaleflow.search.report import batch_k_diverse_best, k_diverse_best


def candidate(degrees: float, score: float, counts: bool = True) -> dict:
    a = math.radians(degrees)
    return {"embedding": [math.cos(a), math.sin(a)], "score": score, "valid": counts, "novel": True}


def test_four_candidates_pairwise_below_cosine_0_7():
    records = [candidate(0, 1.0), candidate(10, 0.9), candidate(90, 0.8), candidate(180, 0.7), candidate(270, 0.6),
               candidate(45, 0.5), candidate(135, 2.0, counts=False)]
    # 0 and 10 degrees are one answer twice (cosine 0.98): the four directions 90 apart are needed, down to 0.6.
    assert k_diverse_best(records) == 0.6
    assert k_diverse_best(records, k=2) == 0.8  # 0 and 90 degrees: 1.0 and 0.8
    assert k_diverse_best(records, k=3) == 0.7
    assert k_diverse_best(records[:4]) is None  # only three different directions
    assert k_diverse_best(records, max_cosine=1.01) == 0.7  # any four: the four best counted


def test_a_collapsed_batch_has_no_diverse_best():
    records = [candidate(d, 1.0 - 0.01 * d) for d in range(0, 40, 5)]  # all within 35 degrees: cosine >= 0.82
    assert k_diverse_best(records) is None
    assert k_diverse_best(records, k=1) == pytest.approx(1.0)


def test_the_k_diverse_best_within_each_batch():
    def at(step, degrees, score, initial=False):
        return {**candidate(degrees, score), "step": step, "proposed_by": "initial" if initial else "guided"}

    spread = [at(1, d, s) for d, s in ((0, 0.9), (90, 0.8), (180, 0.7), (270, 0.6))]  # 4-diverse: 0.6
    collapsed = [at(2, d, 1.0) for d in (0, 5, 10, 15)]  # one answer four times: none
    initial = [at(0, d, 5.0, initial=True) for d in (0, 90, 180, 270)]  # the initial design is not a batch
    mean, share = batch_k_diverse_best(initial + spread + collapsed)
    assert mean == pytest.approx(0.6) and share == 0.5  # the mean is over the batches that hold 4
    assert batch_k_diverse_best(initial + collapsed) == (None, 0.0)
    assert batch_k_diverse_best(initial) == (None, None)
