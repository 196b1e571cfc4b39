"""The built-in WordNet/MiniLM dataset ships with the package and loads as documented."""
from __future__ import annotations

import numpy as np
import pytest

from scaleflow.data.builtin import BUILTIN_DATASETS, builtin_metadata, load_builtin


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
