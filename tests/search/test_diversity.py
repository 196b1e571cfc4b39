"""The k-diverse best on constructed candidates: the best score k pairwise-different counted candidates reach."""
import math

import pytest

from scaleflow.search.report import k_diverse_best


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
