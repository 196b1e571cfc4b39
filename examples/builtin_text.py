"""A stand-in decoder and a text constraint on the built-in data (README, "Constraints on a real problem").

    scaleflow optimize runs/default --objective target --targets test \
        --constraint examples/builtin_text.py:words>=12 --out searches/target-words

`decode(x)` gives each candidate the gloss of its nearest built-in row: a neighbour, not a decoding (SONAR's
decoder writes new text; this one only stands in for it). `words(x, texts)` is the number of words of each
candidate's text (its decoding where `--decoder` gave one, else its nearest gloss): the kind of outcome a
user measures beside the score, e.g. "a candidate must read as a full sentence".
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from scaleflow.data.builtin import load_builtin


@functools.lru_cache(maxsize=1)
def _rows() -> tuple[torch.Tensor, list[str]]:
    x, texts = load_builtin()
    return torch.nn.functional.normalize(torch.as_tensor(x, dtype=torch.float32), dim=1), texts


def decode(x: torch.Tensor) -> list[str]:
    """x: [N, 384] built-in (all-MiniLM-L6-v2) embeddings -> the gloss of each one's nearest built-in row."""
    rows, texts = _rows()
    nearest = (torch.nn.functional.normalize(x.float(), dim=1) @ rows.T).argmax(1)
    return [texts[i] for i in nearest.tolist()]


def words(x: torch.Tensor, texts: Optional[list] = None) -> torch.Tensor:
    """x: [N, 384] -> [N] word counts of the candidates' texts (nearest glosses where a text is missing)."""
    given = list(texts) if texts is not None else [None] * len(x)
    missing = [i for i, t in enumerate(given) if t is None]
    if missing:
        for i, text in zip(missing, decode(x[missing])):
            given[i] = text
    return torch.tensor([len(t.split()) for t in given], dtype=torch.float64)
