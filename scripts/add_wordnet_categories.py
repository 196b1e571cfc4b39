#!/usr/bin/env python3
"""Write the WordNet lexicographer category of every row of the built-in dataset.

Why: the built-in ``wordnet_minilm.npz`` (12,000 WordNet glosses embedded with
all-MiniLM-L6-v2) has no labels besides the synset ids. WordNet itself files every synset
in one of 45 *lexicographer files* (``noun.animal``, ``noun.artifact``, ``verb.motion``,
``adj.all``, ...), a coarse semantic category that costs nothing to recover. It gives each
row a label for classifiers and for search objectives ("generate noun.animal glosses"),
without recomputing or rewriting the 9 MB npz.

How:

1. Read the ``synsets`` array of the npz (``"<pos><offset>"``, pos n/v/a/r; the build
   script gave every synset from ``data.adj`` the letter ``a``, satellites ``s``
   included, so ``a`` ids are looked up in ``data.adj`` whatever their ss_type).
2. In ``/usr/share/wordnet/data.{noun,verb,adj,adv}`` every synset line starts with
   ``synset_offset lex_filenum ss_type ...``: ``lex_filenum`` is a two-digit decimal
   number. Offsets are byte offsets, unique within one file, so (file, offset) finds the line.
3. Map ``lex_filenum`` to its name with WordNet's ``lexnames`` file (three tab-separated
   fields: number, name, syntactic category). Debian's ``wordnet-base`` does not ship that
   file, but it ships the man page ``lexnames(5WN)``, whose table holds the same 45 rows;
   the script reads the file if it exists (``--lexnames``) and the man page otherwise.
4. Check that each category agrees with the synset's part of speech (n -> noun.*,
   v -> verb.*, a -> adj.*, r -> adv.*) and its ss_type (a/s in data.adj), then write
   ``src/scaleflow/data/builtin/wordnet_minilm_categories.tsv``: a header line
   ``synset<TAB>category``, then one line per npz row, in row order. Plain text, so a
   diff of it is readable; ``scaleflow.data.builtin.load_builtin_categories`` reads it
   and checks that its synsets equal the npz's.

Needs only numpy and WordNet (``apt-get install -y wordnet-base``); runs in a second.

Usage::

    python scripts/add_wordnet_categories.py
    python scripts/add_wordnet_categories.py --npz other.npz --out /tmp/cats.tsv
"""

from __future__ import annotations

import argparse
import collections
import gzip
import re
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILTIN_DIR = REPO_ROOT / "src" / "scaleflow" / "data" / "builtin"
DEFAULT_NPZ = BUILTIN_DIR / "wordnet_minilm.npz"
DEFAULT_OUT = BUILTIN_DIR / "wordnet_minilm_categories.tsv"
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
DEFAULT_MAN_PAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")
# pos letter in our synset ids -> (data file suffix, allowed ss_types, category prefix)
POS = {
    "n": ("noun", {"n"}, "noun."),
    "v": ("verb", {"v"}, "verb."),
    "a": ("adj", {"a", "s"}, "adj."),  # satellites (s) live in data.adj and got letter a
    "r": ("adv", {"r"}, "adv."),
}
N_LEXFILES = 45  # WordNet 3.0 has lexicographer files 00..44


def read_lexnames(lexnames: Path, man_page: Path) -> dict[int, str]:
    """lex_filenum -> lexicographer file name, from ``lexnames`` or its man page."""
    table: dict[int, str] = {}
    if lexnames.exists():
        source = lexnames
        lines = lexnames.read_text(encoding="utf-8").splitlines()
    elif man_page.exists():
        source = man_page
        with gzip.open(man_page, "rt", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    else:
        raise SystemExit(f"neither {lexnames} nor {man_page} exists (apt-get install wordnet-base)")
    # Both formats have rows "NN<TAB>name<TAB>..."; the man page pads one name with spaces.
    row = re.compile(r"^(\d\d)\t\s*([a-z]+\.[A-Za-z]+)\s*\t")
    for line in lines:
        m = row.match(line)
        if m:
            table[int(m.group(1))] = m.group(2)
    if sorted(table) != list(range(N_LEXFILES)):
        raise SystemExit(f"{source}: expected lexicographer files 00..{N_LEXFILES - 1}, got {sorted(table)}")
    print(f"lexnames: {len(table)} entries from {source}", file=sys.stderr)
    return table


def read_lex_filenums(wordnet_dir: Path) -> dict[str, tuple[int, str]]:
    """``"<pos><offset>"`` -> (lex_filenum, ss_type) for every synset in the data files."""
    out: dict[str, tuple[int, str]] = {}
    for pos, (suffix, _, _) in POS.items():
        with open(wordnet_dir / f"data.{suffix}", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  "):  # licence header lines
                    continue
                offset, lex_filenum, ss_type = line.split(" ", 3)[:3]
                out[f"{pos}{offset}"] = (int(lex_filenum), ss_type)
    return out


def categorize(synsets: list[str], wordnet_dir: Path, lexnames: dict[int, str]) -> list[str]:
    """Category of each synset id, checked against its part of speech."""
    entries = read_lex_filenums(wordnet_dir)
    categories: list[str] = []
    for sid in synsets:
        if sid not in entries:
            raise SystemExit(f"synset {sid} not found in {wordnet_dir}/data.*")
        lex_filenum, ss_type = entries[sid]
        _, ss_types, prefix = POS[sid[0]]
        category = lexnames[lex_filenum]
        if ss_type not in ss_types or not category.startswith(prefix):
            raise SystemExit(f"synset {sid}: ss_type {ss_type!r}, category {category!r} disagree with pos")
        categories.append(category)
    return categories


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--npz", type=Path, default=DEFAULT_NPZ, help=f"dataset (default {DEFAULT_NPZ})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output .tsv (default {DEFAULT_OUT})")
    p.add_argument("--wordnet-dir", type=Path, default=DEFAULT_WORDNET_DIR)
    p.add_argument("--lexnames", type=Path, default=None,
                   help="WordNet lexnames file (default <wordnet-dir>/lexnames; man page if absent)")
    p.add_argument("--man-page", type=Path, default=DEFAULT_MAN_PAGE)
    args = p.parse_args(argv)

    with np.load(args.npz, allow_pickle=False) as data:
        synsets = [str(s) for s in data["synsets"]]
    lexnames = read_lexnames(args.lexnames or args.wordnet_dir / "lexnames", args.man_page)
    categories = categorize(synsets, args.wordnet_dir, lexnames)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("synset\tcategory\n")
        for sid, category in zip(synsets, categories):
            fh.write(f"{sid}\t{category}\n")

    counts = collections.Counter(categories)
    print(f"wrote {args.out}: {len(categories)} rows, {len(counts)} categories", file=sys.stderr)
    for category, count in counts.most_common():
        print(f"{count:6d}  {category}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
