"""prepare_data: splits too small to train, validate or evaluate are refused; constant dimensions stay unscaled."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from scaleflow.data.errors import DataError
from scaleflow.data.prepare import (MIN_HELD_OUT_ROWS, MIN_TRAIN_ROWS, PRDC_NEIGHBOURS, held_out_rows,
                                    prepare_data)
from scaleflow.data.splits import make_splits


def _save(tmp_path, n: int, dim: int = 4, name: str = "rows.npy") -> str:
    path = tmp_path / name
    np.save(path, np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32))
    return str(path)


def test_the_minimums_are_what_evaluation_needs():
    assert MIN_HELD_OUT_ROWS == PRDC_NEIGHBOURS + 1 == 6  # PRDC's k nearest neighbours need k + 1 rows per set
    assert MIN_TRAIN_ROWS == 16


def test_three_rows_are_refused_naming_the_file_and_what_each_split_needs(tmp_path):
    path = _save(tmp_path, 3)
    with pytest.raises(DataError) as info:
        prepare_data(path)
    assert str(info.value) == (
        f"{path}: has 3 rows but a run needs 28 (at least 16 train + 6 val + 6 test; training needs >= 16 rows for "
        "minibatches and per-dimension statistics, val and test >= 6 each for a loss, and evaluation's PRDC with "
        "5 nearest neighbours); add rows or lower --n-train/--n-val/--n-test")


def test_fractions_hold_out_at_least_the_minimum_and_28_rows_are_enough(tmp_path):
    assert [held_out_rows(0.1, n) for n in (28, 59, 100, 50_000)] == [6, 6, 10, 1000]
    data = prepare_data(_save(tmp_path, 28))
    assert (len(data.train), len(data.val), len(data.test)) == (16, 6, 6)
    with pytest.raises(DataError, match="has 27 rows but a run needs 28"):
        prepare_data(_save(tmp_path, 27, name="short.npy"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_val=5), "--n-val 5: held-out splits need at least 6 rows (a loss, and evaluation's PRDC with 5 nearest"),
    (dict(n_test=2), "--n-test 2: held-out splits need at least 6 rows"),
    (dict(n_train=15), "--n-train 15: training needs at least 16 rows (minibatches and per-dimension statistics)"),
    (dict(n_train=60, n_val=30, n_test=30), "has 100 rows but a run needs 120 (60 train + 30 val + 30 test;"),
])
def test_counts_too_small_or_too_large_name_the_option(kwargs, message, tmp_path):
    path = _save(tmp_path, 100)
    with pytest.raises(DataError) as info:
        prepare_data(path, **kwargs)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_runs_read_back_with_their_own_splits_are_not_rechecked(tmp_path):
    # A run's splits (read from its folder) are used as they are, whatever today's minimums.
    path = _save(tmp_path, 10)
    splits = make_splits(10, 2, 2, seed=0)
    data = prepare_data(path, splits=splits)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 2, 2)


def test_a_dimension_constant_over_training_rows_stays_unscaled_with_a_warning(tmp_path, caplog):
    n = 100
    x = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    val_rows = make_splits(n, held_out_rows(0.1, n), held_out_rows(0.1, n), seed=0).val
    x[:, 2] = 3.0
    x[val_rows, 2] = 3.5  # varies on held-out rows only: divided by ~0 it would be ~5e7
    path = tmp_path / "constant.npy"
    np.save(path, x)
    with caplog.at_level(logging.WARNING, logger="scaleflow.data.prepare"):
        data = prepare_data(str(path))
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 1 dimension(s) (2) do not vary over the 80 training rows; they are left unscaled (std 1) "
        "and stay constant"]
    assert data.standardizer.std[2] == 1.0 and (data.train[:, 2] == 0).all()
    assert data.val[:, 2].tolist() == [0.5] * len(val_rows)
    assert data.train[:, [0, 1, 3]].std(0, unbiased=False).sub(1).abs().max() < 1e-5
