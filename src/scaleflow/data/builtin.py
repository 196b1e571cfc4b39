"""Built-in datasets shipped inside the package, so a user can start with nothing else.

`wordnet-minilm`: about 12,000 WordNet 3.0 glosses (definitions) embedded with
sentence-transformers/all-MiniLM-L6-v2: 384-D, unit-norm rows. How it was built and
its licences: `scaleflow/data/builtin/SOURCE.md`; the build: `scripts/build_builtin_dataset.py`.
"""
from __future__ import annotations

from importlib import resources

import numpy as np

# name -> file inside the package folder scaleflow/data/builtin/
BUILTIN_DATASETS: dict[str, str] = {
    "wordnet-minilm": "wordnet_minilm.npz",
}


def _resource(name: str):
    if name not in BUILTIN_DATASETS:
        names = ", ".join(sorted(BUILTIN_DATASETS))
        raise ValueError(f"unknown built-in dataset {name!r}; available: {names}")
    return resources.files("scaleflow.data").joinpath("builtin", BUILTIN_DATASETS[name])


def load_builtin(name: str = "wordnet-minilm") -> tuple[np.ndarray, list[str]]:
    """Load a built-in dataset.

    Args:
        name: one of `BUILTIN_DATASETS` (default "wordnet-minilm").

    Returns:
        (embeddings, texts): embeddings is a float32 array `[N, D]` (for "wordnet-minilm":
        N = 12,000, D = 384, rows of unit norm up to float16 storage error); texts is a list
        of N strings, texts[i] being the sentence embedded in row i.

    Raises:
        ValueError: unknown name; the message lists the available names.
    """
    resource = _resource(name)
    # as_file gives a real path even if the package is installed zipped
    with resources.as_file(resource) as path, np.load(path, allow_pickle=False) as data:
        # stored as float16 to keep the wheel small; compute in float32
        embeddings = np.ascontiguousarray(data["embeddings"], dtype=np.float32)
        texts = [str(t) for t in data["texts"]]
    return embeddings, texts


def builtin_metadata(name: str = "wordnet-minilm") -> dict[str, str]:
    """Build metadata stored with a built-in dataset (n, dim, model, wordnet_version, seed, ...)."""
    resource = _resource(name)
    with resources.as_file(resource) as path, np.load(path, allow_pickle=False) as data:
        if "meta_keys" not in data.files:
            return {}
        return {str(k): str(v) for k, v in zip(data["meta_keys"], data["meta_values"])}
