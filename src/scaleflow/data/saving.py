"""Writing embeddings (and texts) to .npy, .safetensors or .parquet, atomically."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from scaleflow.data.errors import DataError
from scaleflow.files import atomic_write

SAVE_SUFFIXES = (".npy", ".safetensors", ".parquet")


def save_embeddings(path: str | Path, embeddings: np.ndarray, texts: Optional[list[str]] = None) -> Path:
    """Write `embeddings: [N, D]` float32 to `path` by suffix; texts only in .parquet (a `text` column).

    The file appears whole or not at all (written under a temporary name, then renamed).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_SUFFIXES:
        raise DataError(f"{path}: cannot write '{path.suffix or '(no suffix)'}'; use one of {', '.join(SAVE_SUFFIXES)}")
    if not path.parent.exists():
        raise DataError(f"{path}: folder {path.parent} does not exist")
    array = np.ascontiguousarray(embeddings, dtype=np.float32)

    def write(tmp: str) -> None:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, array)
        elif suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file({"embeddings": array}, tmp)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            columns = {"embedding": pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), array.shape[1])}
            if texts is not None:
                columns["text"] = pa.array(texts, type=pa.string())
            pq.write_table(pa.table(columns), tmp)

    atomic_write(path, write)
    return path
