"""Means, paired and Welch differences, Holm: against numbers worked by hand and scipy's own tests."""
import math

import numpy as np
import pytest
from scipy import stats

from scaleflow.stats import (decide, holm, mean_interval, paired_difference, seed_difference, verdict,
                             welch_difference)


def test_mean_interval_matches_t():
    mean, ci = mean_interval([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert mean == 2.0 and ci == pytest.approx([2 - half, 2 + half])
    assert mean_interval([5.0]) == (5.0, None)


def test_paired_is_narrower_where_differences_are_consistent():
    # Seeds move both settings together (spread 1.0 over seeds), the difference is always 0.1 +- 0.01.
    a = [1.10, 2.11, 3.09, 4.10, 5.10]
    b = [1.00, 2.00, 3.00, 4.00, 5.00]
    paired, welch = paired_difference(a, b), welch_difference(a, b)
    assert paired.method == "paired" and welch.method == "welch"
    assert paired.estimate == pytest.approx(0.1) and welch.estimate == pytest.approx(0.1)
    assert paired.ci[0] > 0  # a difference
    assert welch.ci[0] < 0 < welch.ci[1]  # lost in the spread over seeds
    assert paired.width < welch.width / 50
    # Against scipy's paired and Welch t tests.
    assert paired.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert welch.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_paired_interval_by_hand():
    d = np.array([0.3, 0.1, 0.2])
    diff = paired_difference([1.3, 1.1, 1.2], [1.0, 1.0, 1.0])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert diff.ci == pytest.approx([0.2 - half, 0.2 + half])
    assert diff.n == (3, 3)


def test_seed_difference_pairs_shared_seeds_and_falls_back_to_welch():
    a = {0: 1.1, 1: 2.1, 2: 3.1, 3: 9.9}
    b = {0: 1.0, 1: 2.0, 2: 3.0}  # seed 3 diverged on b's side: left out of the pairs
    d = seed_difference(a, b)
    assert d.method == "paired" and d.n == (3, 3) and d.estimate == pytest.approx(0.1)
    w = seed_difference({0: 1.0, 1: 2.0}, {5: 1.5, 6: 2.5})
    assert w.method == "welch"
    assert seed_difference({0: 1.0}, {0: 2.0}).ci is None


def test_holm_against_hand_worked_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, None, 0.01]) == [0.5, None, pytest.approx(0.02)]
    assert holm([]) == []


def test_verdicts_say_the_interval_and_its_width():
    same = verdict(welch_difference([1.0, 2.0, 3.0], [1.1, 2.2, 2.9]), names=("x", "y"))
    assert same.startswith("no difference at this precision") and "width" in same
    higher = verdict(paired_difference([1.1, 2.1, 3.1], [1.0, 2.0, 3.02]), names=("x", "y"))
    assert higher.startswith("x higher")
    adjusted = verdict(paired_difference([1.1, 2.1, 3.1], [1.0, 2.0, 3.02]), adjusted_p=0.2, names=("x", "y"))
    assert adjusted.startswith("no difference") and "Holm" in adjusted
    assert verdict(paired_difference([1.0], [2.0])).startswith("cannot tell")


def test_decide_codes_and_the_verdicts_word():
    clear = paired_difference([1.1, 2.1, 3.1], [1.0, 2.0, 3.02])
    assert decide(clear) == "a" and decide(paired_difference([1.0, 2.0, 3.02], [1.1, 2.1, 3.1])) == "b"
    assert decide(clear, adjusted_p=0.2) == "no difference"
    assert decide(paired_difference([1.0], [2.0])) == "no interval"
    assert decide(paired_difference([2.0, 3.0], [1.0, 2.0])) == "no spread"
    assert decide(paired_difference([2.0, 3.0], [2.0, 3.0])) == "identical"
    assert verdict(clear, names=("x", "y"), word="better").startswith("x better ([")
    # Welch with unequal sides names both counts.
    assert "3 and 2 seeds" in verdict(welch_difference([1.0, 2.0, 3.0], [1.5, 2.5]))
