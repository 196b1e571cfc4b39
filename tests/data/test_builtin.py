"""The built-in WordNet/MiniLM dataset ships with the package and loads as documented."""
from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from scaleflow.data import builtin
from scaleflow.data.builtin import (
    BUILTIN_DATASETS,
    builtin_metadata,
    load_builtin,
    load_builtin_categories,
)


@pytest.fixture(scope="module")
def wordnet():
    return load_builtin("wordnet-minilm")


def test_shape_dtype_finite(wordnet):
    emb, texts = wordnet
    assert isinstance(emb, np.ndarray)
    assert emb.dtype == np.float32
    assert emb.ndim == 2 and emb.shape[1] == 384
    assert 11_000 <= emb.shape[0] <= 13_000
    assert emb.flags["C_CONTIGUOUS"]
    assert np.isfinite(emb).all()


def test_rows_unit_norm(wordnet):
    emb, _ = wordnet
    # MiniLM's pipeline ends with Normalize; float16 storage costs ~1e-3 at most
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=5e-3)


def test_texts(wordnet):
    emb, texts = wordnet
    assert isinstance(texts, list) and len(texts) == emb.shape[0]
    assert all(isinstance(t, str) and t.strip() for t in texts)
    assert len(set(texts)) == len(texts), "duplicate texts"
    assert all(20 <= len(t) <= 200 for t in texts)


def test_rows_are_not_degenerate(wordnet):
    emb, _ = wordnet
    # distinct glosses give distinct vectors: no two rows identical
    assert np.unique(emb.astype(np.float16), axis=0).shape[0] == emb.shape[0]


def test_deterministic(wordnet):
    emb, texts = wordnet
    emb2, texts2 = load_builtin()  # default name
    np.testing.assert_array_equal(emb, emb2)
    assert texts == texts2
    assert emb2 is not emb  # a fresh array each call, callers may modify it


def test_metadata_matches(wordnet):
    emb, _ = wordnet
    meta = builtin_metadata("wordnet-minilm")
    assert int(meta["n"]) == emb.shape[0] and int(meta["dim"]) == emb.shape[1]
    assert meta["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["wordnet_version"].startswith("WordNet 3.0")


def test_unknown_name_lists_available():
    with pytest.raises(ValueError) as exc:
        load_builtin("no-such-dataset")
    msg = str(exc.value)
    assert "no-such-dataset" in msg
    for name in BUILTIN_DATASETS:
        assert name in msg
    with pytest.raises(ValueError, match="wordnet-minilm"):
        builtin_metadata("nope")


# --- per-row WordNet lexicographer categories (wordnet_minilm_categories.tsv) ---

POS_PREFIX = {"n": "noun.", "v": "verb.", "a": "adj.", "r": "adv."}


@pytest.fixture(scope="module")
def categories():
    return load_builtin_categories("wordnet-minilm")


@pytest.fixture(scope="module")
def synsets():
    # read straight from the npz, independently of the loader under test
    path = Path(builtin.__file__).parent / "builtin" / "wordnet_minilm.npz"
    with np.load(path, allow_pickle=False) as data:
        return [str(s) for s in data["synsets"]]


def test_categories_one_per_row(categories, wordnet):
    emb, _ = wordnet
    assert isinstance(categories, list) and len(categories) == emb.shape[0] == 12_000
    assert all(isinstance(c, str) for c in categories)
    assert categories == load_builtin_categories()  # default name


def test_categories_agree_with_part_of_speech(categories, synsets):
    assert len(synsets) == len(categories)
    bad = [(s, c) for s, c in zip(synsets, categories) if not c.startswith(POS_PREFIX[s[0]])]
    assert not bad, bad[:5]


@pytest.mark.parametrize(
    "row, synset, category",
    [
        # each checked by hand in /usr/share/wordnet/data.* (lex_filenum field) and with `wn -a`
        (3, "a00010385", "adj.all"),  # "crapulous", a satellite adjective (ss_type s)
        (1385, "a02607188", "adj.pert"),  # "aeromedical": of or relating to aviation medicine
        (2515, "n01317089", "noun.animal"),  # "beast of burden, jument"
        (9000, "n12709103", "noun.plant"),  # "pomelo": southeastern Asian tree ...
        (10507, "r00011093", "adv.all"),  # "well, good"
        (11900, "v02554797", "verb.social"),  # "brevet": promote somebody by brevet
    ],
)
def test_categories_spot_checks(categories, synsets, row, synset, category):
    assert synsets[row] == synset
    assert categories[row] == category


def test_category_counts_plausible(categories):
    counts = collections.Counter(categories)
    # WordNet 3.0 has 45 lexicographer files; a uniform 12,000-row sample hits all of them
    assert len(counts) == 45
    top = [c for c, _ in counts.most_common(8)]
    for big in ("adj.all", "noun.artifact", "noun.person", "noun.plant", "noun.animal"):
        assert big in top
    assert 1_100 <= counts["noun.artifact"] <= 1_400  # 1,263 in the shipped file
    assert 550 <= counts["noun.animal"] <= 850  # 695
    # part-of-speech totals match SOURCE.md: 8,748 n / 1,215 v / 1,754 a / 283 r
    by_pos = collections.Counter(c.split(".")[0] for c in categories)
    assert by_pos == {"noun": 8_748, "verb": 1_215, "adj": 1_754, "adv": 283}


def test_categories_misaligned_tsv_is_an_error(monkeypatch, synsets):
    # the npz's synsets in another order: the tsv no longer lines up and must be refused
    monkeypatch.setattr(builtin, "_npz_synsets", lambda name: synsets[::-1])
    with pytest.raises(ValueError, match="does not match.*add_wordnet_categories"):
        load_builtin_categories("wordnet-minilm")
    monkeypatch.setattr(builtin, "_npz_synsets", lambda name: synsets[:-1])
    with pytest.raises(ValueError, match="12000 rows vs 11999"):
        load_builtin_categories("wordnet-minilm")


def test_categories_unknown_name():
    with pytest.raises(ValueError, match="wordnet-minilm"):
        load_builtin_categories("nope")
