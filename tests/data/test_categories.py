"""`--categories`: runs on some WordNet categories of the built-in data (the transfer study's domain shift)."""
import numpy as np
import pytest

from scaleflow.data.builtin import load_builtin_categories
from scaleflow.data.errors import DataError
from scaleflow.data.prepare import category_mask, prepare_data
from scaleflow.training.config import ConfigError, make_config
from scaleflow.training.pretrained import pretrain_categories

LABELS = np.asarray(load_builtin_categories())


def test_splits_hold_only_the_chosen_categories():
    data = prepare_data("builtin", n_val=50, n_test=50, categories="noun.animal")
    rows = np.concatenate([data.splits.train, data.splits.val, data.splits.test])
    assert set(LABELS[rows]) == {"noun.animal"} and len(rows) == (LABELS == "noun.animal").sum() == 695
    assert data.splits.n_rows == 12_000  # indices into the whole file: a run reads its rows back without the option
    again = prepare_data("builtin", splits=data.splits)
    assert np.array_equal(again.train.numpy(), data.train.numpy())


def test_prefixes_and_exclusion():
    assert set(LABELS[category_mask("builtin", "verb.*")]) == {label for label in set(LABELS) if label.startswith("verb.")}
    kept = category_mask("builtin", "!noun.animal,noun.plant")
    assert not set(LABELS[kept]) & {"noun.animal", "noun.plant"} and kept.sum() == 12_000 - 695 - 870


@pytest.mark.parametrize("data, categories, fragment", [
    ("builtin", "noun.unicorn", "'noun.unicorn' matches no row"),
    ("rows.npy", "noun.animal", "only the built-in data has categories"),
    ("builtin", " , ", "give category names"),
])
def test_bad_categories_are_refused_naming_the_option(data, categories, fragment):
    with pytest.raises(DataError, match="--categories") as err:
        category_mask(data, categories)
    assert fragment in str(err.value)


def test_the_builtin_prior_pretrains_on_the_other_categories():
    assert pretrain_categories(make_config({"categories": "noun.animal,verb.*"})) == "!noun.animal,verb.*"
    assert pretrain_categories(make_config({"categories": "!noun.animal"})) == "noun.animal"
    assert pretrain_categories(make_config({"data": "rows.npy"})) is None
    with pytest.raises(ConfigError, match="test rows would leak"):
        pretrain_categories(make_config({}))
