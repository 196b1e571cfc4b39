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


def test_constant_column_does_not_blow_up() -> None:
    x = _data()
    x[:, 2] = 4.25
    s = Standardizer.fit(x)
    assert s.std[2] == pytest.approx(1e-8)
    z = s.transform(x)
    assert np.isfinite(z).all() and np.abs(z[:, 2]).max() < 1e-3
    np.testing.assert_allclose(s.inverse_transform(z)[:, 2], 4.25, atol=1e-6)
    zh = s.transform(torch.from_numpy(x).half())  # 1e-8 is 0 in float16: still finite
    assert torch.isfinite(zh).all()


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
