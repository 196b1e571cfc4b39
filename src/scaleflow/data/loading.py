"""Load an embedding matrix (and optional texts) from a file, with precise validation.

Every problem a user can cause is reported as a one-line `DataError` naming the file,
what is wrong (shape, dtype, row indices, ...) and what to do about it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from scaleflow.data.errors import DataError

EMBEDDING_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".safetensors", ".parquet")
TEXT_SUFFIXES = (".txt", ".jsonl")
_MAX_LISTED = 5  # row indices quoted in a message before "..."


@dataclass
class EmbeddingSet:
    """Embeddings read from one file.

    Attributes:
        embeddings: `[N, D]` float32, every value finite, N >= 1.
        texts: N strings (row i is the text of embedding i), or None.
        source: the path the embeddings came from, for messages and run records.
    """

    embeddings: np.ndarray
    texts: list[str] | None
    source: str

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


def load_embeddings(path: str | Path, texts_path: str | Path | None = None) -> EmbeddingSet:
    """Read `[N, D]` embeddings from `.npy/.npz/.pt/.pth/.safetensors/.parquet`.

    Texts come from inside the file (npz array `texts`, pt dict key `texts`, parquet
    column `text`/`texts`) or from `texts_path` (`.txt`, one line per row, or `.jsonl`
    with a `text` field); `texts_path` wins when both are present.

    Raises:
        DataError: missing/empty/corrupt file, unsupported suffix, not 2-D, non-float
            dtype, NaN/Inf rows, zero rows, or a texts count that differs from N.
    """
    p = Path(path)
    suffix = _check_file(p, EMBEDDING_SUFFIXES, "embeddings")
    reader = _READERS[".pt" if suffix == ".pth" else suffix]
    try:
        raw, texts = reader(p)
    except DataError:
        raise
    except Exception as e:  # each library has its own exception types for bad bytes
        raise DataError(f"{p}: could not be read as {suffix}, the file looks truncated or corrupt "
                        f"({_short(e)}); re-export or re-download it") from e
    emb = _as_matrix(raw, str(p))
    if texts_path is not None:
        texts = load_texts(texts_path)
        src = f"texts file {texts_path}"
    else:
        src = "texts stored in it"
    if texts is not None and len(texts) != emb.shape[0]:
        raise DataError(f"{p}: has {emb.shape[0]} rows but {src} has {len(texts)} texts; "
                        f"each row needs exactly one text")
    return EmbeddingSet(embeddings=emb, texts=texts, source=str(p))


def load_texts(path: str | Path) -> list[str]:
    """Read texts: `.txt` is one text per line, `.jsonl` one object with a `text` field per line."""
    p = Path(path)
    suffix = _check_file(p, TEXT_SUFFIXES, "texts")
    try:
        content = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: is not UTF-8 text (bad byte at offset {e.start}); "
                        f"re-save it as UTF-8") from e
    # split on "\n" only: str.splitlines would also split on \x0b, \u2028, ... inside a text
    lines = [line.removesuffix("\r") for line in content.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # trailing newline ends the last line, it is not an empty text
    if suffix == ".txt":
        return lines
    texts = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}: line {i} is not valid JSON ({e.msg}); fix or remove that line") from e
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f"{p}: line {i} has no string field 'text'; "
                            f'each line must look like {{"text": "..."}}')
        texts.append(record["text"])
    return texts


def check_dimension(embeddings: np.ndarray | torch.Tensor | EmbeddingSet, expected_dim: int,
                    what: str = "checkpoint", source: str | None = None) -> None:
    """Raise DataError if `embeddings` (`[N, D]`) has D != `expected_dim`."""
    if isinstance(embeddings, EmbeddingSet):
        source = source or embeddings.source
        embeddings = embeddings.embeddings
    dim = int(embeddings.shape[-1])
    if dim != expected_dim:
        where = f"{source}: the embeddings" if source else "The embedding data"
        raise DataError(f"{where} has dimension {dim} but the {what} expects {expected_dim}; "
                        f"use embeddings from the same encoder the {what} was made with")


# --------------------------------------------------------------------------- checks


def _check_file(p: Path, suffixes: tuple[str, ...], kind: str) -> str:
    if not p.exists():
        raise DataError(f"{p}: file not found; check the path (relative paths start at {Path.cwd()})")
    if p.is_dir():
        raise DataError(f"{p}: is a folder; give a file ({kind}: {', '.join(suffixes)})")
    suffix = p.suffix.lower()
    if suffix not in suffixes:
        raise DataError(f"{p}: unsupported {kind} file type '{p.suffix or '(none)'}'; "
                        f"supported: {', '.join(suffixes)}")
    if not p.is_file():
        raise DataError(f"{p}: not a regular {kind} file")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: file is empty (0 bytes); it was probably not fully written, re-export it")
    return suffix


def _as_matrix(arr: np.ndarray, src: str) -> np.ndarray:
    """Validate a raw array and return it as contiguous float32 `[N, D]`."""
    if arr.ndim != 2:
        raise DataError(f"{src}: embeddings must be 2-D [rows, dim] but have shape {tuple(arr.shape)}; "
                        f"reshape to (n_rows, dim) before saving")
    if arr.dtype.kind != "f":
        kind = {"U": "string ", "S": "bytes ", "O": "Python-object ", "b": "boolean ",
                "i": "integer ", "u": "integer ", "c": "complex "}.get(arr.dtype.kind, "")
        raise DataError(f"{src}: embeddings have {kind}dtype {arr.dtype} but must be floating point "
                        f"(float16/float32/float64); convert with .astype('float32') if that is correct")
    if arr.shape[0] == 0:
        raise DataError(f"{src}: has 0 rows (shape {tuple(arr.shape)}); it needs at least one embedding")
    if arr.shape[1] == 0:
        raise DataError(f"{src}: embeddings have dimension 0 (shape {tuple(arr.shape)})")
    with np.errstate(over="ignore"):  # overflow becomes Inf, reported just below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if bad.size:
        rows = ", ".join(str(i) for i in bad[:_MAX_LISTED]) + (", ..." if bad.size > _MAX_LISTED else "")
        extra = "" if arr.dtype == np.float32 else " (values beyond float32 range count as Inf)"
        raise DataError(f"{src}: {bad.size} of {out.shape[0]} rows contain NaN or Inf{extra} "
                        f"({'row' if bad.size == 1 else 'rows'} {rows}); drop or re-embed those rows")
    return out


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    msg = msg if len(msg) <= 120 else msg[:117] + "..."
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _pick(names: list[str], src: str, what: str) -> str:
    """Choose the array called `embeddings`, else the only one."""
    if "embeddings" in names:
        return "embeddings"
    if len(names) == 1:
        return names[0]
    if not names:
        raise DataError(f"{src}: contains no {what}; store the embeddings under the name 'embeddings'")
    raise DataError(f"{src}: contains several {what} ({', '.join(names)}) and none named 'embeddings'; "
                    f"rename the one to use to 'embeddings'")


def _text_list(value: Any, src: str) -> list[str]:
    items = value.tolist() if isinstance(value, np.ndarray) else value
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise DataError(f"{src}: 'texts' must be a list of strings (one per row)")
    return items


def _torch_to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    # bfloat16 has no numpy dtype; any float is accepted and becomes float32 anyway
    return t.float().numpy() if t.is_floating_point() else t.numpy()


# --------------------------------------------------------------------------- readers
# Each returns (raw array, texts or None); library exceptions mean unreadable bytes.


def _read_npy(p: Path) -> tuple[np.ndarray, None]:
    try:
        return np.load(p, allow_pickle=False), None
    except ValueError as e:
        if "Object arrays" in str(e):  # a genuine dtype problem, not corruption
            raise DataError(f"{p}: embeddings have Python-object dtype object but must be floating point "
                            f"(float16/float32/float64); save a numeric array") from e
        raise


def _read_npz(p: Path) -> tuple[np.ndarray, list[str] | None]:
    with np.load(p, allow_pickle=False) as z:
        name = _pick([n for n in z.files if n != "texts"], str(p), "arrays")
        try:
            arr = z[name]
            texts = _text_list(z["texts"], str(p)) if "texts" in z.files else None
        except ValueError as e:
            if "Object arrays" in str(e):
                raise DataError(f"{p}: array '{name}' or 'texts' has object dtype, which is not loaded "
                                f"for safety; save embeddings as floats and texts with np.array(texts, dtype=str)") from e
            raise
    return arr, texts


def _read_pt(p: Path) -> tuple[np.ndarray, list[str] | None]:
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        if "Weights only load failed" in str(e):
            raise DataError(f"{p}: holds Python objects that torch.load(weights_only=True) refuses; "
                            f"save a tensor or a dict {{'embeddings': tensor, 'texts': [str, ...]}}") from e
        raise
    if isinstance(obj, torch.Tensor):
        return _torch_to_numpy(obj), None
    if isinstance(obj, dict):
        tensors = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
        key = _pick([str(k) for k in tensors], str(p), "tensors")
        texts = _text_list(obj["texts"], str(p)) if "texts" in obj else None
        return _torch_to_numpy(obj[key]), texts
    raise DataError(f"{p}: contains a {type(obj).__name__}, not a tensor; "
                    f"save a tensor or a dict {{'embeddings': tensor, 'texts': [str, ...]}}")


def _read_safetensors(p: Path) -> tuple[np.ndarray, None]:
    from safetensors.torch import load_file

    tensors = load_file(str(p))
    return _torch_to_numpy(tensors[_pick(sorted(tensors), str(p), "tensors")]), None


def _read_parquet(p: Path) -> tuple[np.ndarray, list[str] | None]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(p)
    cols = {f.name: f.type for f in table.schema}
    is_str = lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)  # noqa: E731
    text_col = next((c for c in ("text", "texts") if c in cols and is_str(cols[c])), None)
    texts = None
    if text_col is not None:
        texts = table.column(text_col).to_pylist()
        missing = [i for i, t in enumerate(texts) if t is None]
        if missing:
            rows = ", ".join(map(str, missing[:_MAX_LISTED])) + (", ..." if len(missing) > _MAX_LISTED else "")
            raise DataError(f"{p}: column '{text_col}' has {len(missing)} missing texts (rows {rows})")

    is_list = lambda t: pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)  # noqa: E731
    lists = [c for c, t in cols.items() if is_list(t)]
    if lists:
        name = next((c for c in ("embedding", "embeddings") if c in lists), None)
        if name is None and len(lists) > 1:
            raise DataError(f"{p}: has several list columns ({', '.join(lists)}) and none named 'embedding' "
                            f"or 'embeddings'; rename the one to use")
        name = name or lists[0]
        col = table.column(name).combine_chunks()
        if col.null_count:
            rows = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
            raise DataError(f"{p}: column '{name}' has {len(rows)} null rows (rows "
                            f"{', '.join(map(str, rows[:_MAX_LISTED]))}); drop them")
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            j = int(np.flatnonzero(lengths != lengths[0])[0])
            raise DataError(f"{p}: column '{name}' has lists of different lengths (row 0 has {lengths[0]}, "
                            f"row {j} has {lengths[j]}); every embedding needs the same dimension")
        dim = int(lengths[0]) if len(lengths) else 0
        values = col.flatten()
        if not pa.types.is_floating(values.type):
            raise DataError(f"{p}: column '{name}' holds {values.type} values but embeddings must be "
                            f"floating point (float16/float32/float64)")
        return values.to_numpy(zero_copy_only=False).reshape(len(col), dim), texts

    # one column per dimension: every numeric column is a dimension
    numeric = [c for c, t in cols.items() if (pa.types.is_integer(t) or pa.types.is_floating(t))
               and not c.startswith("__index_level_")]  # pandas writes its index as such a column
    if not numeric:
        found = ", ".join(f"{c} ({t})" for c, t in cols.items()) or "none"
        raise DataError(f"{p}: no embedding column found (columns: {found}); use a list column named "
                        f"'embedding' or one float column per dimension")
    ints = [c for c in numeric if not pa.types.is_floating(cols[c])]
    if ints:
        raise DataError(f"{p}: column(s) {', '.join(ints)} have integer dtype {cols[ints[0]]}; with one column "
                        f"per dimension every numeric column must be float (drop id/label columns)")
    arr = np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in numeric], axis=1) if table.num_rows \
        else np.zeros((0, len(numeric)), np.float32)
    return arr, texts


_READERS: dict[str, Callable[[Path], tuple[np.ndarray, list[str] | None]]] = {
    ".npy": _read_npy, ".npz": _read_npz, ".pt": _read_pt,
    ".safetensors": _read_safetensors, ".parquet": _read_parquet,
}
