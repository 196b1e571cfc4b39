"""Labelled images for the optimizer scale study: scikit-learn's bundled digits (built in, no download)
and CIFAR-10 from files the user already has. Nothing is ever downloaded.

Every source comes out the same way: seeded train / val / test splits of float32 images `[N, C, H, W]`,
normalized per channel by the training split's mean and standard deviation, and int64 labels `[N]`.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scaleflow.data.errors import DataError

BUILTIN_IMAGES = ("digits",)
BUILTIN_SIZES = {"digits": 8}  # image side in pixels, known before loading (for checking a patch size)
CIFAR_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
CIFAR_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class ImageSplits:
    """Train / val / test images `[N, C, H, W]` (float32, normalized) and labels `[N]` (int64)."""

    name: str
    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.train[0].shape[1]

    @property
    def image_size(self) -> int:
        return self.train[0].shape[2]

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """`train`, `val` or `test`."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def _split_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) row indices, `fraction` of each class held out (stratified), seeded."""
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        held.append(rows[: int(round(fraction * len(rows)))])
    held_out = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held_out), held_out


def _normalized(images: dict[str, np.ndarray], labels: dict[str, np.ndarray], name: str,
                meta: dict[str, Any]) -> ImageSplits:
    """Normalize every split by the training split's per-channel mean and std (float32: CIFAR-10 in float64
    would take 2.5 GB); to tensors. Labels must be 0..K-1 and every split non-empty.

    Raises:
        DataError: an empty split, or labels that are not 0, 1, ..., K - 1.
    """
    empty = [k for k in images if len(labels[k]) == 0]
    if empty:
        raise DataError(f"{name}: the {', '.join(empty)} split would be empty ({meta.get('source')}); "
                        "give more images or another val_fraction")
    classes = np.unique(np.concatenate([labels[k] for k in labels]))
    if classes[0] < 0 or classes[-1] != len(classes) - 1:
        raise DataError(f"{meta.get('source')}: labels must be 0, 1, ..., classes - 1; found {len(classes)} distinct "
                        f"labels from {classes[0]} to {classes[-1]}")
    train = images["train"]
    moments = []
    for c in range(train.shape[1]):  # one channel at a time in float64
        channel = train[:, c].astype(np.float64)
        moments.append((channel.mean(), channel.std() + 1e-8))
    mean, std = (np.array(m, dtype=np.float32).reshape(1, -1, 1, 1) for m in zip(*moments))
    out = {k: (torch.from_numpy((v.astype(np.float32) - mean) / std), torch.from_numpy(labels[k].astype(np.int64)))
           for k, v in images.items()}
    num_classes = len(classes)
    meta = {**meta, "rows": {k: int(len(labels[k])) for k in labels}, "channel_mean": mean.ravel().tolist(),
            "channel_std": std.ravel().tolist()}
    return ImageSplits(name, out["train"], out["val"], out["test"], num_classes, meta)


def load_digits_splits(seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> ImageSplits:
    """scikit-learn's digits: 1,797 8x8 grey images of 0-9, split (stratified, seeded) into test
    (`test_fraction`), val (`val_fraction` of all rows) and train (the rest: 1,259 rows by default)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images[:, None].astype(np.float32)  # [1797, 1, 8, 8], values 0..16
    labels = bunch.target
    rest, test = _split_indices(labels, test_fraction, seed)
    kept, val = _split_indices(labels[rest], val_fraction / (1 - test_fraction), seed + 1)
    train, val = rest[kept], rest[val]
    return _normalized({"train": images[train], "val": images[val], "test": images[test]},
                       {"train": labels[train], "val": labels[val], "test": labels[test]}, "digits",
                       {"source": "sklearn.datasets.load_digits", "seed": seed})


def _read_cifar_batches(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    parts = {}
    for name in CIFAR_BATCHES:
        try:
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            parts[name] = (np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32),
                           np.asarray(batch[b"labels"], dtype=np.int64))
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError, AttributeError) as err:
            raise DataError(f"{folder / name}: not a CIFAR-10 batch ({type(err).__name__}: {err})") from None
    x_train = np.concatenate([parts[b][0] for b in CIFAR_BATCHES[:5]])
    y_train = np.concatenate([parts[b][1] for b in CIFAR_BATCHES[:5]])
    return x_train, y_train, *parts["test_batch"]


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in CIFAR_NPZ_KEYS if k not in data.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(missing)}; an image .npz needs "
                                f"{', '.join(CIFAR_NPZ_KEYS)} (images [N, H, W, C] or [N, C, H, W], labels [N])")
            arrays = [np.asarray(data[k]) for k in CIFAR_NPZ_KEYS]
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz ({' '.join(str(err).split())})") from None
    x_train, y_train, x_test, y_test = arrays
    if x_train.ndim == 3 and x_test.ndim == 3:  # grey images [N, H, W]: one channel
        x_train, x_test = x_train[:, None], x_test[:, None]
    for key, x, y in (("x_train", x_train, y_train), ("x_test", x_test, y_test)):
        if x.ndim != 4 or len(x) != len(y) or y.ndim != 1:
            raise DataError(f"{path}: {key} must be [N, H, W], [N, H, W, C] or [N, C, H, W] with one label per image; "
                            f"got {list(x.shape)} and {list(y.shape)} labels")
    if x_train.shape[-1] in (1, 3) and x_train.shape[1] not in (1, 3):  # channels last -> first
        x_train, x_test = x_train.transpose(0, 3, 1, 2), x_test.transpose(0, 3, 1, 2)
    if x_train.shape[2] != x_train.shape[3] or x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: images must be square and the same shape in x_train and x_test; "
                        f"got {list(x_train.shape[1:])} and {list(x_test.shape[1:])}")
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


def check_image_source(source: str) -> None:
    """Check that `source` names images we can read (`digits`, a CIFAR-10 folder with every batch, or an
    existing .npz) without loading them: what a sweep checks before its first trial.

    Raises:
        DataError: one line naming the path and what is missing.
    """
    if source in BUILTIN_IMAGES:
        return
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data {source!r}: no such file or folder; give `digits` (built in), a CIFAR-10 folder "
                        "(cifar-10-batches-py) or an .npz with x_train, y_train, x_test, y_test; nothing is downloaded")
    if path.is_dir():
        folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        missing = [b for b in CIFAR_BATCHES if not (folder / b).is_file()]
        if missing:
            raise DataError(f"{folder}: not a CIFAR-10 folder, missing {', '.join(missing)} (expected the extracted "
                            "cifar-10-python.tar.gz, `cifar-10-batches-py`); scaleflow downloads nothing")
    elif path.suffix != ".npz":
        raise DataError(f"{path}: not a CIFAR-10 folder or an .npz; give `digits`, a cifar-10-batches-py folder or "
                        "an .npz with x_train, y_train, x_test, y_test")


def load_image_splits(source: str = "digits", seed: int = 0, val_fraction: float = 0.1) -> ImageSplits:
    """The images of `source`: `digits` (built in), a CIFAR-10 folder (`cifar-10-batches-py`, or a
    folder holding it), or an `.npz` with x_train, y_train, x_test, y_test. For the files, the test
    split is the file's own and val is `val_fraction` of the training images (stratified, seeded).

    Raises:
        DataError: one line naming the path and what is missing or wrong.
    """
    if source == "digits":
        return load_digits_splits(seed, val_fraction)
    check_image_source(source)
    path = Path(source).expanduser()
    if path.is_dir():
        folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        x_train, y_train, x_test, y_test = _read_cifar_batches(folder)
        name = "cifar10"
    else:
        x_train, y_train, x_test, y_test = _read_npz(path)
        name = path.stem
    kept, val = _split_indices(y_train, val_fraction, seed)
    return _normalized({"train": x_train[kept], "val": x_train[val], "test": x_test},
                       {"train": y_train[kept], "val": y_train[val], "test": y_test}, name,
                       {"source": str(path), "seed": seed})
