"""Files of a run folder: each written atomically, and read back with a one-line error naming the
file when it is missing, empty, truncated or not what it should be."""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from scaleflow.files import atomic_write


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
