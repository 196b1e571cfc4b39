"""load_embeddings: every format gives the same array, every bad input a precise DataError."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from scaleflow.data.errors import DataError
from scaleflow.data.loading import EmbeddingSet, check_dimension, load_embeddings, load_texts

N, D = 7, 5
EMB = np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)
TEXTS = [f"sentence number {i}" for i in range(N)]


def _write(path: Path, arr: np.ndarray, texts: list[str] | None = None, how: str = "") -> Path:
    """Save `arr` (and texts where the format holds them) in the format of path's suffix."""
    s = path.suffix
    if s == ".npy":
        np.save(path, arr)
    elif s == ".npz":
        extra = {"texts": np.array(texts)} if texts else {}
        np.savez(path, **({"embeddings": arr} if how != "unnamed" else {"vecs": arr}), **extra)
    elif s in (".pt", ".pth"):
        obj = torch.from_numpy(arr) if how == "tensor" else {"embeddings": torch.from_numpy(arr)}
        if texts:
            obj["texts"] = texts
        torch.save(obj, path)
    elif s == ".safetensors":
        save_file({"embeddings" if how != "unnamed" else "x": torch.from_numpy(arr)}, str(path))
    elif s == ".parquet":
        if how == "columns":
            cols = {f"d{j}": arr[:, j] for j in range(arr.shape[1])}
        elif how == "fixed":
            cols = {"embedding": pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])}
        else:
            cols = {"vec" if how == "unnamed" else "embeddings": list(arr)}
        if texts:
            cols["text"] = texts
        pq.write_table(pa.table(cols), path)
    return path


FORMATS = [("a.npy", ""), ("a.npz", ""), ("a.npz", "unnamed"), ("a.pt", ""), ("a.pth", "tensor"),
           ("a.safetensors", ""), ("a.safetensors", "unnamed"), ("a.parquet", ""),
           ("a.parquet", "fixed"), ("a.parquet", "columns"), ("a.parquet", "unnamed")]


@pytest.mark.parametrize("name,how", FORMATS)
def test_every_format_loads_the_same_array(tmp_path: Path, name: str, how: str) -> None:
    p = _write(tmp_path / name, EMB, how=how)
    got = load_embeddings(p)
    assert isinstance(got, EmbeddingSet) and got.source == str(p)
    assert got.embeddings.dtype == np.float32 and got.embeddings.shape == (N, D)
    np.testing.assert_array_equal(got.embeddings, EMB)
    assert got.texts is None and len(got) == N and got.dim == D


@pytest.mark.parametrize("name", ["a.npz", "a.pt", "a.parquet"])
def test_texts_stored_inside_the_file(tmp_path: Path, name: str) -> None:
    got = load_embeddings(_write(tmp_path / name, EMB, TEXTS))
    assert got.texts == TEXTS
    np.testing.assert_array_equal(got.embeddings, EMB)


def test_texts_from_txt_and_jsonl(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.npy", EMB)
    (tmp_path / "t.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"text": t, "id": i}) + "\n"
                                              for i, t in enumerate(TEXTS)), encoding="utf-8")
    assert load_embeddings(p, tmp_path / "t.txt").texts == TEXTS
    assert load_embeddings(p, tmp_path / "t.jsonl").texts == TEXTS


def test_txt_keeps_unusual_line_separators_inside_a_text(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("a\u2028b\r\nc\n", encoding="utf-8")
    assert load_texts(tmp_path / "t.txt") == ["a\u2028b", "c"]


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_widths_become_float32(tmp_path: Path, dtype: type) -> None:
    got = load_embeddings(_write(tmp_path / "a.npy", EMB.astype(dtype)))
    assert got.embeddings.dtype == np.float32
    np.testing.assert_allclose(got.embeddings, EMB, atol=1e-2)


def test_bfloat16_tensor_is_accepted(tmp_path: Path) -> None:
    torch.save(torch.from_numpy(EMB).bfloat16(), tmp_path / "a.pt")
    assert load_embeddings(tmp_path / "a.pt").embeddings.dtype == np.float32


# ----------------------------------------------------------------------------- errors


def _err(path: Path, texts_path: Path | None = None) -> str:
    with pytest.raises(DataError) as e:
        load_embeddings(path, texts_path)
    msg = str(e.value)
    assert path.name in msg and "\n" not in msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _err(tmp_path / "nope.npy")


def test_unsupported_suffix_lists_supported(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1,2\n")
    msg = _err(tmp_path / "a.csv")
    assert ".csv" in msg and all(s in msg for s in (".npy", ".npz", ".pt", ".safetensors", ".parquet"))


@pytest.mark.parametrize("name", ["a.npy", "a.npz", "a.pt", "a.safetensors", "a.parquet"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    assert "empty (0 bytes)" in _err(tmp_path / name)


@pytest.mark.parametrize("name", ["a.npy", "a.npz", "a.pt", "a.safetensors", "a.parquet"])
def test_truncated_file(tmp_path: Path, name: str) -> None:
    p = _write(tmp_path / name, np.random.default_rng(1).standard_normal((200, 16)).astype(np.float32))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _err(p)


@pytest.mark.parametrize("shape", [(6,), (2, 3, 4)])
def test_not_two_dimensional_gives_shape(tmp_path: Path, shape: tuple[int, ...]) -> None:
    p = tmp_path / "a.npy"
    np.save(p, np.zeros(shape, np.float32))
    msg = _err(p)
    assert "2-D" in msg and str(shape) in msg


@pytest.mark.parametrize("arr,dtype", [(np.ones((3, 2), np.int64), "int64"), (np.ones((3, 2), bool), "bool"),
                                       (np.array([["a", "b"], ["c", "d"]]), "<U1")])
def test_non_float_dtype_is_named(tmp_path: Path, arr: np.ndarray, dtype: str) -> None:
    np.save(tmp_path / "a.npy", arr)
    msg = _err(tmp_path / "a.npy")
    assert dtype in msg and "float" in msg


def test_object_dtype(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.empty((2, 2), dtype=object), allow_pickle=True)
    assert "object" in _err(tmp_path / "a.npy")


def test_integer_tensor_and_parquet_list(tmp_path: Path) -> None:
    torch.save(torch.ones(3, 2, dtype=torch.int32), tmp_path / "a.pt")
    assert "int32" in _err(tmp_path / "a.pt")
    pq.write_table(pa.table({"embedding": [[1, 2], [3, 4]]}), tmp_path / "b.parquet")
    assert "int64" in _err(tmp_path / "b.parquet")


def test_nan_and_inf_rows_are_listed(tmp_path: Path) -> None:
    arr = EMB.copy()
    arr[2, 1], arr[5, 0] = np.nan, np.inf
    msg = _err(_write(tmp_path / "a.npy", arr))
    assert "2 of 7 rows" in msg and "rows 2, 5" in msg


def test_many_nan_rows_are_elided(tmp_path: Path) -> None:
    arr = np.full((20, 3), np.nan, np.float32)
    msg = _err(_write(tmp_path / "a.npz", arr))
    assert "20 of 20 rows" in msg and "0, 1, 2, 3, 4, ..." in msg


def test_float64_overflow_counts_as_inf(tmp_path: Path) -> None:
    arr = EMB.astype(np.float64)
    arr[3, 0] = 1e300
    assert "row 3" in _err(_write(tmp_path / "a.npy", arr))


def test_zero_rows(tmp_path: Path) -> None:
    assert "0 rows" in _err(_write(tmp_path / "a.npy", np.zeros((0, 4), np.float32)))


def test_texts_count_mismatch(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.npy", EMB)
    (tmp_path / "t.txt").write_text("\n".join(TEXTS[:-1]) + "\n")
    msg = _err(p, tmp_path / "t.txt")
    assert "7 rows" in msg and "6 texts" in msg and "t.txt" in msg
    pq.write_table(pa.table({"embedding": list(EMB), "text": TEXTS[:3] + [None] * 4}), tmp_path / "b.parquet")
    assert "4 missing texts" in _err(tmp_path / "b.parquet")


def test_bad_jsonl_names_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.npy", EMB)
    (tmp_path / "t.jsonl").write_text('{"text": "ok"}\n{"txt": "no"}\n')
    with pytest.raises(DataError, match=r"t\.jsonl: line 2 .*'text'"):
        load_embeddings(p, tmp_path / "t.jsonl")
    (tmp_path / "u.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(DataError, match=r"u\.jsonl: line 2 is not valid JSON"):
        load_embeddings(p, tmp_path / "u.jsonl")


def test_several_arrays_without_embeddings_are_listed(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", foo=EMB, bar=EMB)
    msg = _err(tmp_path / "a.npz")
    assert "foo" in msg and "bar" in msg and "embeddings" in msg
    save_file({"p": torch.zeros(2, 2), "q": torch.zeros(2, 2)}, str(tmp_path / "b.safetensors"))
    assert "p, q" in _err(tmp_path / "b.safetensors")
    pq.write_table(pa.table({"u": list(EMB), "v": list(EMB)}), tmp_path / "c.parquet")
    assert "u, v" in _err(tmp_path / "c.parquet")


def test_pickled_object_in_pt_is_refused(tmp_path: Path) -> None:
    torch.save({"embeddings": torch.zeros(2, 2), "meta": Path("x")}, tmp_path / "a.pt")
    assert "weights_only" in _err(tmp_path / "a.pt")


def test_ragged_parquet_lists(tmp_path: Path) -> None:
    pq.write_table(pa.table({"embedding": [[1.0, 2.0], [1.0, 2.0, 3.0]]}), tmp_path / "a.parquet")
    assert "row 1 has 3" in _err(tmp_path / "a.parquet")


def test_check_dimension() -> None:
    check_dimension(np.zeros((2, 384)), 384)
    with pytest.raises(DataError, match="has dimension 384 but the checkpoint expects 1024"):
        check_dimension(np.zeros((2, 384)), 1024)
    es = EmbeddingSet(np.zeros((2, 8), np.float32), None, "my.npy")
    with pytest.raises(DataError, match=r"my\.npy: .*dimension 8 but the prior expects 4"):
        check_dimension(es, 4, what="prior")
