"""From a data source to normalized train/val/test tensors: load, deduplicate, split, standardize."""
from __future__ import annotations

import dataclasses

import logging
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from scaleflow.data.builtin import BUILTIN_DATASETS, is_builtin, load_builtin, load_builtin_categories
from scaleflow.data.dedup import near_duplicate_mask
from scaleflow.data.errors import DataError
from scaleflow.data.loading import EmbeddingSet, load_embeddings
from scaleflow.data.normalization import Standardizer, Whitener
from scaleflow.data.splits import Splits, make_splits

MAX_HELD_OUT_FROM_FRACTION = 1000  # a fraction of a big file should not swallow it

# The smallest splits a run can be trained, validated and evaluated on. Evaluation scores samples
# against the test rows (and, as its floor, a draw of training rows against them) with PRDC over
# k nearest neighbours, which needs k + 1 rows in each set, and a Frechet distance, which needs a
# covariance (>= 2 rows); validation computes the same loss on its rows and picks the best weights.
# Training fits per-dimension mean and std on its rows (from n rows a std is off by ~1/sqrt(2(n-1)):
# 18% at 16 rows, 32% at 6) and cuts them into minibatches.
PRDC_NEIGHBOURS = 5
MIN_HELD_OUT_ROWS = PRDC_NEIGHBOURS + 1  # val and test, each
MIN_TRAIN_ROWS = 16

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Normalized splits of one embedding file, plus what is needed to undo and reproduce them.

    Attributes:
        train, val, test: `[n, D]` float32 tensors in the standardized space.
        standardizer: fitted on the training rows; `inverse_transform` gives back original space.
        splits: row indices into the *original* file (after dedup they skip removed rows).
        texts: the file's texts (all rows, original order) or None.
        source: where the rows came from ("builtin:<name>" or a path).
        n_removed: rows dropped as near-duplicates.
    """

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    standardizer: Standardizer | Whitener  # per-dimension; a whitening after `restandardize` with one
    splits: Splits
    texts: Optional[list[str]]
    source: str
    n_removed: int = 0

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])

    def texts_of(self, split: str) -> Optional[list[str]]:
        """Texts of the rows of `split` ("train", "val", "test"), aligned with its tensor."""
        if self.texts is None:
            return None
        return [self.texts[i] for i in getattr(self.splits, split)]


def load_source(data: str, texts: Optional[str] = None) -> EmbeddingSet:
    """`"builtin"`, `"builtin:<name>"` or a path -> validated `EmbeddingSet`."""
    if is_builtin(data):
        name = data.partition(":")[2] or next(iter(BUILTIN_DATASETS))
        embeddings, builtin_texts = load_builtin(name)
        return EmbeddingSet(embeddings=embeddings, texts=builtin_texts, source=f"builtin:{name}")
    return load_embeddings(data, texts_path=texts)


def category_mask(data: str, categories: str) -> np.ndarray:
    """`[N]` bool: the rows of built-in data `data` whose WordNet lexicographer category matches `categories`, a
    comma-separated list of names ("noun.animal") or prefixes ("verb.*"); a leading "!" keeps every row but
    those ("!noun.animal,noun.plant"). DataError (naming the option) for other data or a name that matches nothing."""
    if not is_builtin(data):
        raise DataError(f"--categories: only the built-in data has categories; got --data {data}")
    labels = np.asarray(load_builtin_categories(data.partition(":")[2] or next(iter(BUILTIN_DATASETS))))
    text = categories.strip()
    drop = text.startswith("!")
    names = [n.strip() for n in text.lstrip("!").split(",") if n.strip()]
    if not names:
        raise DataError("--categories: give category names, e.g. noun.animal,noun.plant or verb.* (or !noun.animal)")
    matched = np.zeros(len(labels), dtype=bool)
    for name in names:
        hit = np.char.startswith(labels, name[:-1]) if name.endswith("*") else labels == name
        if not hit.any():
            known = ", ".join(sorted(set(labels.tolist()))[:8])
            raise DataError(f"--categories: {name!r} matches no row of {data}; categories look like {known}, ...")
        matched |= hit
    return ~matched if drop else matched


def held_out_rows(value: Union[int, float], n_rows: int) -> int:
    """A count as given; a fraction of `n_rows`, at least `MIN_HELD_OUT_ROWS` and at most 1000 rows."""
    if isinstance(value, float):
        return min(MAX_HELD_OUT_FROM_FRACTION, max(MIN_HELD_OUT_ROWS, round(value * n_rows)))
    return int(value)


def check_split_sizes(n_rows: int, n_train: Optional[int], n_val: int, n_test: int, source: str) -> None:
    """Refuse splits too small to train, validate or evaluate on (`MIN_TRAIN_ROWS`, `MIN_HELD_OUT_ROWS`).

    Raises:
        DataError: one line naming the file, the option and how many rows each split needs.
    """
    why_held_out = f"a loss, and evaluation's PRDC with {PRDC_NEIGHBOURS} nearest neighbours"
    for count, option in ((n_val, "--n-val"), (n_test, "--n-test")):
        if count < MIN_HELD_OUT_ROWS:
            raise DataError(f"{source}: {option} {count}: held-out splits need at least {MIN_HELD_OUT_ROWS} rows "
                            f"({why_held_out})")
    if n_train is not None and n_train < MIN_TRAIN_ROWS:
        raise DataError(f"{source}: --n-train {n_train}: training needs at least {MIN_TRAIN_ROWS} rows "
                        "(minibatches and per-dimension statistics)")
    train = max(n_train or 0, MIN_TRAIN_ROWS)
    need = train + n_val + n_test
    if n_rows < need:
        raise DataError(
            f"{source}: has {n_rows} rows but a run needs {need} ({'' if n_train else 'at least '}{train} train + "
            f"{n_val} val + {n_test} test; training needs >= {MIN_TRAIN_ROWS} rows for minibatches and per-dimension "
            f"statistics, val and test >= {MIN_HELD_OUT_ROWS} each for {why_held_out}); "
            "add rows or lower --n-train/--n-val/--n-test")


def prepare_data(
    data: str = "builtin",
    texts: Optional[str] = None,
    n_train: Optional[int] = None,
    n_val: Union[int, float] = 0.1,
    n_test: Union[int, float] = 0.1,
    dedup: bool = False,
    dedup_threshold: float = 0.95,
    seed: int = 0,
    splits: Optional[Splits] = None,
    categories: Optional[str] = None,
) -> PreparedData:
    """Load and split a data source; statistics come from the training rows only.

    Val and test are held out first from a seeded permutation, then training subsets are nested
    prefixes (see `make_splits`). Pass `splits` (e.g. read back from a run) to reuse them exactly.
    `categories` keeps only those rows of the built-in data (`category_mask`); split indices still point
    into the whole file.

    New splits must leave every split big enough to use (`check_split_sizes`); a dimension that is
    constant over the training rows is left unscaled, with a warning (`Standardizer.fit`).

    Raises:
        DataError: unreadable or invalid data, or fewer rows than the split needs.
    """
    rows = load_source(data, texts)
    n_removed = 0
    kept = np.arange(len(rows), dtype=np.int64)
    new_splits = splits is None
    if new_splits:
        selected = category_mask(data, categories) if categories else np.ones(len(rows), dtype=bool)
        if dedup:
            mask, n_removed = near_duplicate_mask(rows.embeddings[selected], dedup_threshold)
            kept = np.flatnonzero(selected)[mask].astype(np.int64)
        else:
            kept = np.flatnonzero(selected).astype(np.int64)
        source = rows.source if not categories else f"{rows.source} ({len(np.flatnonzero(selected))} rows of {categories})"
        source = source if not n_removed else (
            f"{source} (after --dedup removed {n_removed} of {len(rows)} rows at cosine >= {dedup_threshold})")
        n_val, n_test = held_out_rows(n_val, len(kept)), held_out_rows(n_test, len(kept))
        check_split_sizes(len(kept), n_train, n_val, n_test, source)
        local = make_splits(len(kept), n_val, n_test, n_train=n_train, seed=seed, source=source)
        # Indices into the original file, so the run's record points at real rows.
        splits = Splits(
            train=kept[local.train], val=kept[local.val], test=kept[local.test],
            n_rows=len(rows), seed=seed, train_sizes=local.train_sizes,
        )
    elif splits.n_rows != len(rows):
        raise DataError(f"{rows.source}: has {len(rows)} rows but the run was split from {splits.n_rows}; "
                        "use the file the run was trained on (its config.yaml names it)")
    embeddings = torch.from_numpy(rows.embeddings)
    train = embeddings[torch.from_numpy(splits.train)]
    standardizer = Standardizer.fit(train)
    if new_splits and len(standardizer.unscaled):  # said once, when a run is set up
        dims = ", ".join(str(d) for d in standardizer.unscaled[:10]) + (" ..." if len(standardizer.unscaled) > 10 else "")
        logger.warning("%s: %d dimension(s) (%s) do not vary over the %d training rows; they are left unscaled "
                       "(std 1) and stay constant", rows.source, len(standardizer.unscaled), dims, len(train))
    pick = lambda index: standardizer.transform(embeddings[torch.from_numpy(index)]).contiguous()  # noqa: E731
    return PreparedData(
        train=pick(splits.train), val=pick(splits.val), test=pick(splits.test), standardizer=standardizer,
        splits=splits, texts=rows.texts, source=rows.source, n_removed=int(n_removed),
    )


def restandardize(data: PreparedData, standardizer: Standardizer | Whitener) -> PreparedData:
    """The same splits in another normalization (e.g. a source run's, for transfer): every split mapped back
    to the original space and standardized with `standardizer`."""
    if standardizer.dim != data.dim:
        raise ValueError(f"the statistics have dimension {standardizer.dim} but the data {data.dim}")
    move = lambda x: standardizer.transform(data.standardizer.inverse_transform(x)).contiguous()  # noqa: E731
    return dataclasses.replace(data, train=move(data.train), val=move(data.val), test=move(data.test),
                               standardizer=standardizer)

