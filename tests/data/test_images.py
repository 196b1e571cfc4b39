"""Image splits for the scale study: digits built in, CIFAR-10 from a folder or an .npz, no downloads."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from scaleflow.data.errors import DataError
from scaleflow.data.images import CIFAR_BATCHES, check_image_source, load_digits_splits, load_image_splits


def test_digits_splits_are_seeded_stratified_and_normalized():
    data = load_digits_splits(seed=0)
    assert data.meta["rows"] == {"train": 1259, "val": 179, "test": 359}  # 70 / 10 / 20% of 1,797, per class
    assert (data.channels, data.image_size, data.num_classes) == (1, 8, 10)
    x, y = data.train
    assert x.shape == (1259, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(x.mean())) < 1e-5 and float(x.std()) == pytest.approx(1.0, abs=1e-3)
    # every class in every split, in about its share (stratified)
    assert all(torch.bincount(s[1], minlength=10).min() >= 14 for s in (data.train, data.val, data.test))
    again, other = load_digits_splits(seed=0), load_digits_splits(seed=1)
    assert torch.equal(again.test[1], data.test[1]) and torch.equal(again.test[0], data.test[0])
    assert not torch.equal(other.test[0], data.test[0])


def _cifar_folder(folder, n=20):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name in CIFAR_BATCHES:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [i % 10 for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder


def test_cifar_folder_and_its_parent_load(tmp_path):
    folder = _cifar_folder(tmp_path / "cifar-10-batches-py")
    for source in (folder, tmp_path):
        data = load_image_splits(str(source), seed=0, val_fraction=0.1)
        assert data.name == "cifar10" and (data.channels, data.image_size, data.num_classes) == (3, 32, 10)
        assert data.meta["rows"] == {"train": 90, "val": 10, "test": 20}


def test_npz_channels_last_loads(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mini.npz"
    np.savez(path, x_train=rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), y_train=np.arange(40) % 4,
             x_test=rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), y_test=np.arange(8) % 4)
    data = load_image_splits(str(path))
    assert data.train[0].shape[1:] == (3, 16, 16) and data.num_classes == 4 and len(data.test[1]) == 8
    with np.load(path) as raw:  # pixel (row 2, column 5, channel 1) of the first test image, normalized
        pixel = raw["x_test"][0, 2, 5, 1]
    mean, std = data.meta["channel_mean"][1], data.meta["channel_std"][1]
    assert float(data.test[0][0, 1, 2, 5]) == pytest.approx((pixel - mean) / std, rel=1e-5)


def test_grey_npz_gets_one_channel_and_bad_labels_or_splits_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    grey = tmp_path / "grey.npz"
    np.savez(grey, x_train=rng.random((30, 8, 8)), y_train=np.arange(30) % 3, x_test=rng.random((6, 8, 8)),
             y_test=np.arange(6) % 3)
    assert load_image_splits(str(grey)).train[0].shape[1:] == (1, 8, 8)
    shifted = tmp_path / "shifted.npz"
    np.savez(shifted, x_train=rng.random((30, 8, 8)), y_train=np.arange(30) % 3 + 1, x_test=rng.random((6, 8, 8)),
             y_test=np.arange(6) % 3 + 1)
    with pytest.raises(DataError, match="labels must be 0, 1, ..., classes - 1; found 3 distinct labels from 1 to 3"):
        load_image_splits(str(shifted))
    with pytest.raises(DataError, match="the val split would be empty"):
        load_image_splits(str(grey), val_fraction=0.001)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_image_splits(str(broken))


def test_missing_or_wrong_sources_say_what_in_one_line(tmp_path):
    with pytest.raises(DataError, match="no such file or folder.*nothing is downloaded"):
        check_image_source(str(tmp_path / "nowhere"))
    folder = _cifar_folder(tmp_path / "partial")
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="missing test_batch"):
        load_image_splits(str(folder))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a CIFAR-10 folder or an .npz"):
        check_image_source(str(tmp_path / "notes.txt"))
    np.savez(tmp_path / "half.npz", x_train=np.zeros((2, 4, 4, 1)))
    with pytest.raises(DataError, match="missing array.*y_train") as err:
        load_image_splits(str(tmp_path / "half.npz"))
    assert "\n" not in str(err.value)
