"""make_splits: disjoint, deterministic, nested training subsets, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scaleflow.data.errors import DataError
from scaleflow.data.splits import Splits, make_splits


def test_disjoint_and_cover_all_rows_when_n_train_is_none() -> None:
    s = make_splits(1000, n_val=100, n_test=50, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (850, 100, 50)
    assert all(a.dtype == np.int64 for a in (s.train, s.val, s.test))
    allidx = np.concatenate([s.train, s.val, s.test])
    assert len(np.unique(allidx)) == 1000 and allidx.min() == 0 and allidx.max() == 999


def test_deterministic_by_seed_and_different_across_seeds() -> None:
    a, b, c = (make_splits(500, 50, 50, seed=k) for k in (3, 3, 4))
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.val, c.val) and not np.array_equal(a.train, c.train)


def test_training_subsets_are_nested_and_val_test_do_not_move() -> None:
    big = make_splits(12000, 500, 500, n_train=[1000, 5000, 10000], seed=1)
    assert big.train_sizes == [1000, 5000, 10000] and len(big.train) == 10000
    t1, t5, t10 = (set(big.train_subset(n).tolist()) for n in (1000, 5000, 10000))
    assert t1 < t5 < t10
    # asking for one size alone gives the same rows, and the same val/test
    for n in (1000, 5000, None):
        one = make_splits(12000, 500, 500, n_train=n, seed=1)
        np.testing.assert_array_equal(one.val, big.val)
        np.testing.assert_array_equal(one.test, big.test)
        k = n or 11000
        np.testing.assert_array_equal(one.train[: min(k, 10000)], big.train[: min(k, 10000)])
    assert not set(big.train.tolist()) & (set(big.val.tolist()) | set(big.test.tolist()))


def test_fractions() -> None:
    s = make_splits(1000, n_val=0.1, n_test=0.05, seed=0)
    assert (len(s.val), len(s.test), len(s.train)) == (100, 50, 850)
    assert len(make_splits(5, 0.01, 0, seed=0).val) == 1  # a positive fraction holds out at least one row


def test_too_few_rows_says_needed_and_available() -> None:
    with pytest.raises(DataError, match=r"emb\.npy: splits need 6000 rows \(5000 train \+ 500 val \+ 500 test\) "
                                        r"but only 4000 are available"):
        make_splits(4000, 500, 500, n_train=[1000, 5000], seed=0, source="emb.npy")
    with pytest.raises(DataError, match="need 11 rows"):
        make_splits(10, 5, 5, seed=0)


@pytest.mark.parametrize("kw", [dict(n_val=1.5), dict(n_val=-1), dict(n_test=True), dict(n_train=[0]),
                                dict(n_train=[100, 2.5])])
def test_bad_sizes(kw: dict) -> None:
    args = dict(n_val=10, n_test=10) | kw
    with pytest.raises(DataError):
        make_splits(1000, seed=0, **args)


def test_dict_round_trip_through_json() -> None:
    s = make_splits(300, 30, 20, n_train=[50, 100], seed=7)
    back = Splits.from_dict(json.loads(json.dumps(s.to_dict())))
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(back, name), getattr(s, name))
        assert getattr(back, name).dtype == np.int64
    assert (back.n_rows, back.seed, back.train_sizes) == (300, 7, [50, 100])
    with pytest.raises(DataError, match="train_subset|training rows"):
        back.train_subset(101)
