"""Standardizer: training statistics, exact inverse, clamp, save/load."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from scaleflow.data.normalization import Standardizer


def _data(n: int = 200, d: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, d)) * rng.uniform(0.01, 5, d) + rng.uniform(-3, 3, d)).astype(np.float32)


def test_training_rows_come_out_standard() -> None:
    x = _data()
    train, rest = x[:150], x[150:] + 10.0
    s = Standardizer.fit(train)
    z = s.transform(train)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(s.mean, train.mean(axis=0), rtol=1e-5, atol=1e-5)  # not pulled by `rest`
    assert s.transform(rest).mean() > 1  # held-out shift stays visible


def test_inverse_round_trip_numpy_and_torch_keep_dtype() -> None:
    x = _data()
    s = Standardizer.fit(x)
    z = s.transform(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(s.inverse_transform(z), x, atol=1e-6, rtol=1e-6)
    for dtype in (torch.float32, torch.float64):
        xt = torch.from_numpy(x).to(dtype)
        zt = s.transform(xt)
        assert zt.dtype == dtype and zt.device == xt.device
        torch.testing.assert_close(s.inverse_transform(zt), xt, atol=1e-6, rtol=1e-6)
        np.testing.assert_allclose(zt.numpy(), z, atol=1e-5)


def test_constant_column_is_left_unscaled() -> None:
    # Dividing by a ~0 std would turn a held-out deviation of 0.25 into ~1e7; unscaled it stays 0.25.
    x = _data()
    x[:, 2] = 4.25
    s = Standardizer.fit(x)
    assert s.std[2] == 1.0 and s.mean[2] == 4.25 and s.unscaled.tolist() == [2]
    z = s.transform(x)
    assert np.isfinite(z).all() and (z[:, 2] == 0).all()
    np.testing.assert_allclose(z[:, [0, 1, 3, 4, 5]].std(axis=0), 1, atol=1e-5)  # the others are scaled as usual
    held_out = x[:3].copy()
    held_out[:, 2] = 4.5
    np.testing.assert_allclose(s.transform(held_out)[:, 2], 0.25)
    np.testing.assert_allclose(s.inverse_transform(z)[:, 2], 4.25)


def test_rounding_noise_counts_as_constant_but_a_small_real_spread_does_not() -> None:
    x = _data()
    x[:, 1] = np.float32(1000.0) + np.float32(6e-5) * (np.arange(len(x)) % 2)  # one float32 step apart
    x[:, 3] = 1e-3 * x[:, 0]  # small but real: still scaled to std 1
    s = Standardizer.fit(x)
    assert s.unscaled.tolist() == [1]
    assert s.transform(x)[:, 3].std() == pytest.approx(1, abs=1e-4)


def test_every_column_of_one_row_is_constant() -> None:
    s = Standardizer.fit(np.array([[1.0, -2.0, 0.0]], np.float32))
    assert s.unscaled.tolist() == [0, 1, 2] and s.std.tolist() == [1.0, 1.0, 1.0]
    assert s.transform(np.array([[1.5, -2.0, 3.0]], np.float32)).tolist() == [[0.5, 0.0, 3.0]]


def test_state_dict_json_and_tensors_round_trip(tmp_path) -> None:
    x = _data()
    s = Standardizer.fit(x)
    via_json = Standardizer.from_state_dict(json.loads(json.dumps(s.state_dict())))
    save_file(s.to_tensors(prefix="norm."), str(tmp_path / "s.safetensors"))
    via_st = Standardizer.from_tensors(load_file(str(tmp_path / "s.safetensors")), prefix="norm.")
    for t in (via_json, via_st):
        np.testing.assert_array_equal(t.mean, s.mean)
        np.testing.assert_array_equal(t.std, s.std)
        np.testing.assert_allclose(t.inverse_transform(s.transform(x)), x, atol=1e-6, rtol=1e-6)


def test_dimension_mismatch() -> None:
    s = Standardizer.fit(_data(d=6))
    with pytest.raises(ValueError, match="dimension 5 .* fitted on 6"):
        s.transform(np.zeros((2, 5), np.float32))


def test_statistics_saved_before_unscaled_dimensions_load_as_fitting_gives_them():
    """Runs saved with a constant dimension's std clamped to 1e-8 read back with std 1, as `fit` gives now,
    so `Run.data()` finds the same statistics and evaluation of such runs goes on."""
    old = Standardizer(np.array([0.0, 2.0], dtype=np.float32), np.array([1e-8, 0.5], dtype=np.float32))
    fitted = Standardizer.fit(np.array([[0.0, 1.5], [0.0, 2.5]]))
    np.testing.assert_array_equal(old.std, fitted.std)
    np.testing.assert_array_equal(old.unscaled, fitted.unscaled)
    assert old.unscaled.tolist() == [0]


def test_constant_dimensions_come_back_as_their_constant():
    x = np.array([[0.0, 1.0, 7.0], [0.0, 3.0, 7.0], [0.0, 2.0, 7.0]])
    st = Standardizer.fit(x)
    assert st.unscaled.tolist() == [0, 2]
    z = torch.tensor([[0.5, 1.0, -2.0]])  # a model's leftover noise in the constant dimensions
    back = st.inverse_transform(z)
    torch.testing.assert_close(back, torch.tensor([[0.0, 2.0 + np.std([1.0, 3.0, 2.0]), 7.0]], dtype=torch.float32))
    np.testing.assert_allclose(st.inverse_transform(st.transform(x)), x, atol=1e-6)  # real rows round-trip
