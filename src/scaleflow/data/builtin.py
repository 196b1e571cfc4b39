"""Built-in datasets shipped inside the package, so a user can start with nothing else.

`wordnet-minilm`: about 12,000 WordNet 3.0 glosses (definitions) embedded with
sentence-transformers/all-MiniLM-L6-v2: 384-D, unit-norm rows. How it was built and
its licences: `scaleflow/data/builtin/SOURCE.md`; the build: `scripts/build_builtin_dataset.py`.
Each row's WordNet lexicographer category (`noun.animal`, `verb.motion`, ...) is in a small
side file, read by `load_builtin_categories` (built by `scripts/add_wordnet_categories.py`).
"""
from __future__ import annotations

from importlib import resources

import numpy as np

# name -> file inside the package folder scaleflow/data/builtin/
BUILTIN_DATASETS: dict[str, str] = {
    "wordnet-minilm": "wordnet_minilm.npz",
}

# name -> per-row category file (TSV: header "synset<TAB>category", then one line per row)
BUILTIN_CATEGORIES: dict[str, str] = {
    "wordnet-minilm": "wordnet_minilm_categories.tsv",
}


def _resource(name: str):
    if name not in BUILTIN_DATASETS:
        names = ", ".join(sorted(BUILTIN_DATASETS))
        raise ValueError(f"unknown built-in dataset {name!r}; available: {names}")
    return resources.files("scaleflow.data").joinpath("builtin", BUILTIN_DATASETS[name])


def is_builtin(source: str) -> bool:
    """Whether a `--data` value names built-in data (`builtin` or `builtin:<name>`)."""
    return source == "builtin" or source.startswith("builtin:")


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


def _npz_synsets(name: str) -> list[str]:
    """The `synsets` array of a built-in npz, `"<pos><offset>"` per row."""
    with resources.as_file(_resource(name)) as path, np.load(path, allow_pickle=False) as data:
        return [str(s) for s in data["synsets"]]


def load_builtin_categories(name: str = "wordnet-minilm") -> list[str]:
    """Category label of every row of a built-in dataset, aligned with `load_builtin`'s rows.

    For "wordnet-minilm" the label is the WordNet lexicographer file of the row's synset, one of
    45 names such as "noun.animal", "noun.artifact", "verb.motion", "adj.all", "adj.pert",
    "adv.all" (all 45 occur; `SOURCE.md` has the counts). The labels live in a plain-text
    side file, `wordnet_minilm_categories.tsv`, so the npz never needs rebuilding for them.

    Args:
        name: a dataset with a category file (default "wordnet-minilm").

    Returns:
        A list of N strings (N = 12,000 for "wordnet-minilm"); entry i labels row i of the
        embeddings and texts returned by `load_builtin(name)`.

    Raises:
        ValueError: unknown name, a dataset without categories, or a category file whose
        synset column differs from the npz's `synsets` array (the two files are out of step:
        rerun `scripts/add_wordnet_categories.py`).
    """
    _resource(name)  # validates the name
    if name not in BUILTIN_CATEGORIES:
        names = ", ".join(sorted(BUILTIN_CATEGORIES))
        raise ValueError(
            f"built-in dataset {name!r} has no categories; datasets with categories: {names}"
        )
    tsv = resources.files("scaleflow.data").joinpath("builtin", BUILTIN_CATEGORIES[name])
    lines = tsv.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != "synset\tcategory":
        raise ValueError(f"{BUILTIN_CATEGORIES[name]}: expected header 'synset<TAB>category'")
    synsets: list[str] = []
    categories: list[str] = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2 or not fields[1]:
            raise ValueError(
                f"{BUILTIN_CATEGORIES[name]} line {lineno}: expected 'synset<TAB>category', got {line!r}"
            )
        synsets.append(fields[0])
        categories.append(fields[1])
    # The labels are only meaningful if row i of the tsv is row i of the npz.
    npz_synsets = _npz_synsets(name)
    if synsets != npz_synsets:
        if len(synsets) != len(npz_synsets):
            detail = f"{len(synsets)} rows vs {len(npz_synsets)} in the npz"
        else:
            i = next(i for i, (a, b) in enumerate(zip(synsets, npz_synsets)) if a != b)
            detail = f"first difference at row {i}: {synsets[i]!r} vs {npz_synsets[i]!r} in the npz"
        raise ValueError(
            f"{BUILTIN_CATEGORIES[name]} does not match {BUILTIN_DATASETS[name]} ({detail}); "
            "rebuild it with scripts/add_wordnet_categories.py"
        )
    return categories
