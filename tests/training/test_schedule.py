import math

import pytest

from scaleflow.training.schedule import warmup_cosine


def test_warmup_is_linear_then_cosine_to_floor():
    assert warmup_cosine(0, 1000, 100) == pytest.approx(0.01)
    assert warmup_cosine(49, 1000, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 1000, 100, 0.1) == pytest.approx(1.0)
    mid = 100 + 450
    assert warmup_cosine(mid, 1000, 100, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(1000, 1000, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(5000, 1000, 100, 0.1) == pytest.approx(0.1)


def test_no_warmup_starts_at_peak():
    assert warmup_cosine(0, 10, 0) == pytest.approx(1.0)
    values = [warmup_cosine(s, 10, 0, 0.0) for s in range(11)]
    assert values == sorted(values, reverse=True) and values[-1] == pytest.approx(0.0)
