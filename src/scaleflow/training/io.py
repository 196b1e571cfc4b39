"""Files of a run folder, each written atomically."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

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
