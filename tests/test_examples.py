"""The example modules under examples/ that the README's commands name."""
import importlib.util
from pathlib import Path

import torch

from scaleflow.data.builtin import load_builtin

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_builtin_text_decodes_to_the_nearest_gloss_and_counts_words():
    text = load("builtin_text")
    x, glosses = load_builtin()
    rows = torch.as_tensor(x[[3, 500]], dtype=torch.float32)
    assert text.decode(rows) == [glosses[3], glosses[500]]  # a built-in row's nearest row is itself
    counts = text.words(rows, [None, "three short words"])
    assert counts.tolist() == [len(glosses[3].split()), 3.0]  # a given text is counted, a missing one decoded
    assert text.words(rows).tolist() == [len(glosses[3].split()), len(glosses[500].split())]
