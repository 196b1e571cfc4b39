"""Every file scaleflow writes or reads back: written atomically (a temporary name in the same folder,
then a rename), read back with a one-line error naming the file when it is missing, empty, truncated
or not what it should be. Run folders (JSON, safetensors, checkpoints, metrics.jsonl) and embedding
files (.npy, .safetensors, .parquet) alike."""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


def cache_root() -> Path:
    """Where computed-once results live (reference priors' scores, the built-in pretrained prior):
    `$SCALEFLOW_CACHE`, else `~/.cache/scaleflow`."""
    return Path(os.environ.get("SCALEFLOW_CACHE") or Path.home() / ".cache" / "scaleflow")


# --- atomic writes ------------------------------------------------------------------------------
def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` then rename onto `path`: readers never see a half-written file, a
    failed write (a full or vanished disk) leaves the previous version whole and no temporary file,
    and the new file is on the disk before it replaces the old one."""
    path = Path(path)
    check_writable_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp (and some writers) make 0600; results are meant to be shared
        _fsync(tmp)  # else a power cut after the rename can leave an empty file in the old one's place
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync(path.parent)  # the rename itself


def _fsync(path: str | Path) -> None:
    """Flush a file, or a folder's entries, to the disk (best effort for folders: not every file system can)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not os.path.isdir(path):
            raise
    finally:
        os.close(fd)


def check_writable_file(path: str | Path, option: str | None = None) -> None:
    """Refuse a file path that cannot be written (a folder, or a path under a file), naming `option`
    when given; commands call it before any work, `atomic_write` before every write."""
    path = Path(path)
    where = f"{option} {path}" if option else f"{path}"
    if path.is_dir():
        raise IsADirectoryError(f"{where}: is a folder; give a file name to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"{where}: {parent} is a file, not a folder")
            break


# --- run files --------------------------------------------------------------------------------
def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, tmp, metadata=metadata))


def write_torch(path: str | Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """One JSON object per line; lines are appended whole and flushed."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


class UnreadableRunFile(ValueError):
    """A run folder's file cannot be read as what it should be; the message names it."""


def _unreadable(path: Path, what: str, err: BaseException) -> UnreadableRunFile:
    detail = " ".join(str(err).split())[:200] or type(err).__name__
    return UnreadableRunFile(f"{path}: not a readable {what} ({detail}); the run folder is damaged or incomplete")


def read_json(path: str | Path, kind: type = dict) -> Any:
    """The JSON object (by default a mapping) in `path`."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _unreadable(path, "JSON file", err) from None
    if not isinstance(obj, kind):
        raise UnreadableRunFile(f"{path}: expected a JSON {kind.__name__}, found a {type(obj).__name__}")
    return obj


def read_safetensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    try:
        return load_file(str(path), device=str(device))
    except (OSError, SafetensorError) as err:
        raise _unreadable(path, "safetensors file", err) from None


def read_torch(path: str | Path, map_location: str | torch.device, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """A checkpoint written by `write_torch` (tensors and plain containers only: never code)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as err:
        raise _unreadable(path, "checkpoint", err) from None
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        # torch's own messages here are about its archive format or weights_only, not the user's file
        raise UnreadableRunFile(f"{path}: not a readable checkpoint (empty, truncated or not written by "
                                "scaleflow); the run folder is damaged") from None
    missing = [key for key in keys if not isinstance(obj, dict) or key not in obj]
    if missing:
        raise UnreadableRunFile(f"{path}: not a scaleflow checkpoint (no {', '.join(missing)})")
    return obj


# --- embedding files ----------------------------------------------------------------------------
SAVE_SUFFIXES = (".npy", ".safetensors", ".parquet")


def save_embeddings(path: str | Path, embeddings: np.ndarray, texts: Optional[list[str]] = None) -> Path:
    """Write `embeddings: [N, D]` float32 to `path` by suffix; texts only in .parquet (a `text` column).

    The file appears whole or not at all (written under a temporary name, then renamed).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_SUFFIXES:
        raise ValueError(f"{path}: cannot write '{path.suffix or '(no suffix)'}'; use one of {', '.join(SAVE_SUFFIXES)}")
    if not path.parent.exists():
        raise ValueError(f"{path}: folder {path.parent} does not exist")
    array = np.ascontiguousarray(embeddings, dtype=np.float32)

    def write(tmp: str) -> None:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, array)
        elif suffix == ".safetensors":
            from safetensors.numpy import save_file as save_numpy

            save_numpy({"embeddings": array}, tmp)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            columns = {"embedding": pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), array.shape[1])}
            if texts is not None:
                columns["text"] = pa.array(texts, type=pa.string())
            pq.write_table(pa.table(columns), tmp)

    atomic_write(path, write)
    return path
