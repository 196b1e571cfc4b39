"""Deterministic train/val/test splits whose training subsets are nested.

Val and test are drawn first from one seeded permutation, so they do not depend on how
many training rows are asked for; the training order is the rest of that permutation,
and a training subset of size n is its first n rows. Hence the 1,000-row training set
is inside the 5,000-row one, which is inside the 10,000-row one: data-scaling curves
compare models whose data differ only by the rows added.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from scaleflow.data.errors import DataError

_FORMAT_VERSION = 1


@dataclass
class Splits:
    """Row indices into one embedding file.

    Attributes:
        train: `[n_train_max]` int64, in the seeded training order (subsets are prefixes).
        val: `[n_val]` int64, sorted.
        test: `[n_test]` int64, sorted.
        n_rows: rows in the file the indices refer to.
        seed: the seed that produced them.
        train_sizes: the training sizes asked for (ascending), or `[len(train)]`.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    n_rows: int
    seed: int
    train_sizes: list[int] = field(default_factory=list)

    def train_subset(self, n: int) -> np.ndarray:
        """The first `n` training indices, `[n]` int64; nested across n by construction."""
        if not 0 < n <= len(self.train):
            raise DataError(f"--n-train {n}: the split holds {len(self.train)} training rows; "
                            f"ask for between 1 and {len(self.train)}")
        return self.train[:n]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (plain ints and lists) for the run folder."""
        return {
            "version": _FORMAT_VERSION, "n_rows": int(self.n_rows), "seed": int(self.seed),
            "train_sizes": [int(n) for n in self.train_sizes],
            "train": self.train.tolist(), "val": self.val.tolist(), "test": self.test.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Splits":
        """Inverse of `to_dict`."""
        missing = [k for k in ("n_rows", "seed", "train", "val", "test") if k not in d]
        if missing:
            raise DataError(f"splits record is missing {', '.join(missing)}; it was not written by to_dict()")
        arrays = {k: np.asarray(d[k], dtype=np.int64).reshape(-1) for k in ("train", "val", "test")}
        sizes = [int(n) for n in d.get("train_sizes") or [len(arrays["train"])]]
        return cls(n_rows=int(d["n_rows"]), seed=int(d["seed"]), train_sizes=sizes, **arrays)


def make_splits(n_rows: int, n_val: int | float, n_test: int | float,
                n_train: int | Sequence[int] | None = None, seed: int = 0,
                source: str | None = None) -> Splits:
    """Split `n_rows` rows into val, test and a nested-by-prefix training order.

    Args:
        n_rows: rows available.
        n_val, n_test: a count (int >= 0) or a fraction of `n_rows` (float in (0, 1)).
        n_train: None for every remaining row; an int or a list of sizes to keep only
            the first `max(sizes)` rows of the training order (each size is a prefix).
        seed: the same seed and sizes always give the same indices.
        source: the data file name, quoted in errors.

    Raises:
        DataError: bad sizes, or fewer rows than val + test + the largest training size.
    """
    where = f"{source}: " if source else ""
    nv, nt = _count(n_val, n_rows, "--n-val"), _count(n_test, n_rows, "--n-test")
    pool = n_rows - nv - nt
    sizes = _train_sizes(n_train)
    need = nv + nt + (max(sizes) if sizes else 1)
    if n_rows < need:
        train_txt = f"{max(sizes)} train" if sizes else "at least 1 train"
        raise DataError(f"{where}splits need {need} rows ({train_txt} + {nv} val + {nt} test) but only "
                        f"{n_rows} are available; lower --n-train/--n-val/--n-test or add data")
    perm = np.random.default_rng(seed).permutation(n_rows).astype(np.int64)
    val, test = np.sort(perm[:nv]), np.sort(perm[nv:nv + nt])
    train = perm[nv + nt:nv + nt + (max(sizes) if sizes else pool)]
    return Splits(train=train, val=val, test=test, n_rows=int(n_rows), seed=int(seed),
                  train_sizes=sizes or [len(train)])


def _count(value: int | float, n_rows: int, option: str) -> int:
    """A count as given, or a fraction of n_rows rounded half up (at least 1)."""
    if isinstance(value, bool):  # bool is an int subclass; True is surely a mistake
        raise DataError(f"{option} {value}: give a count or a fraction in (0, 1)")
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise DataError(f"{option} {value}: a count cannot be negative")
        return int(value)
    if isinstance(value, (float, np.floating)) and 0.0 < value < 1.0:
        return max(1, math.floor(value * n_rows + 0.5))
    raise DataError(f"{option} {value}: a fraction must be a float in (0, 1); give a count as an integer")


def _train_sizes(n_train: int | Sequence[int] | None) -> list[int]:
    if n_train is None:
        return []
    sizes = [n_train] if isinstance(n_train, (int, np.integer)) else list(n_train)
    bad = [n for n in sizes if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0]
    if bad or not sizes:
        raise DataError(f"--n-train {n_train}: training sizes must be positive integers")
    return sorted({int(n) for n in sizes})
