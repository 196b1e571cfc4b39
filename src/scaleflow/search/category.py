"""The built-in `category` objective: the probability of a WordNet lexicographer category (e.g.
`noun.animal`) under a small MLP classifier trained on the held-out rows of the built-in data; and the
built-in two-objective problem `two-category`: the probabilities of two categories at once.

Nonlinear, and easy to fool off the data manifold (a classifier is confident far from any sentence),
which is what the validity rule is for. Needs the built-in data, whose rows carry their categories.
"""
from __future__ import annotations

from itertools import combinations
from typing import Callable, Optional

import torch

from scaleflow.data.builtin import is_builtin, load_builtin_categories
from scaleflow.search.category_classifier import CategoryClassifier, train_category_classifier
from scaleflow.search.objectives import Objective, ObjectiveError
from scaleflow.search.pareto import ParetoObjective, hypervolume
from scaleflow.search.report import k_diverse_best_of

# Frequent noun categories of the built-in data (>= 200 rows each), from which the two-category pairs are made.
PAIR_CATEGORIES = ("noun.animal", "noun.food", "noun.plant", "noun.body", "noun.artifact", "noun.act", "noun.person",
                   "noun.location")
N_DEV_PAIRS, N_TEST_PAIRS = 5, 10
PAIR_SPLIT_SEED = 0  # the one split of the pairs: never varied, so dev and test never mix


def _classifier(run, held_out: torch.Tensor, option: str) -> tuple[CategoryClassifier, list[str]]:
    """The classifier trained on the run's held-out rows `held_out: [K, D]` (validation then test split,
    original space), and their labels."""
    source = run.config.data
    if not is_builtin(source):
        raise ObjectiveError(f"--objective {option} needs a run trained on the built-in data (its rows carry "
                             f"WordNet categories); {run.path} was trained on {source}")
    labels = load_builtin_categories(source.partition(":")[2] or "wordnet-minilm")
    held_labels = [labels[i] for i in list(run.splits.val) + list(run.splits.test)]
    return train_category_classifier(held_out, held_labels, seed=0), held_labels


def _probability(classifier: CategoryClassifier, category: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def probability(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return classifier.probability(x.float(), category)

    return probability


def category_objective(run, held_out: torch.Tensor, category: str,
                       timeout: Optional[float] = None) -> tuple[Objective, dict]:
    """The objective `x: [N, D] -> p(category | x): [N]` for a run trained on the built-in data, with the
    classifier trained on the run's held-out rows `held_out: [K, D]` (validation then test split, original
    space); and notes for the records (the classifier's held-out accuracy, the category's row counts)."""
    classifier, held_labels = _classifier(run, held_out, "category")
    if category not in classifier.categories:
        raise ObjectiveError(f"--category {category!r}: not a category of the classifier; known: "
                             f"{', '.join(classifier.categories)}")
    labels = load_builtin_categories(run.config.data.partition(":")[2] or "wordnet-minilm")
    notes = {"category": category, "classifier_accuracy": classifier.held_out_accuracy,
             "category_rows_held_out": sum(label == category for label in held_labels),
             "category_rows_train": sum(labels[i] == category for i in run.splits.train)}
    return Objective(_probability(classifier, category), f"category[{category}]", timeout, optimum=1.0), notes


def category_pairs() -> dict[str, list[tuple[str, str]]]:
    """The fixed split of the two-category problems: the 28 pairs of `PAIR_CATEGORIES` in one seeded random order
    (`PAIR_SPLIT_SEED`), the first 5 `dev` (for tuning), the next 10 `test` (for reporting); disjoint.

    Why these pairs: each built-in row carries exactly one category, and the classifier's probabilities are a
    softmax (p_a + p_b <= 1), so a real row good at both (both >= 0.5) is all but impossible and few sit between
    the two: the front of the real rows is poor, and the ideal one is p_a + p_b = 1 (hypervolume 0.5 above (0, 0)).
    Each search records its pair's facts on the real rows (`two_category_objective`)."""
    pairs = list(combinations(PAIR_CATEGORIES, 2))
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(PAIR_SPLIT_SEED)).tolist()
    ranked = [pairs[i] for i in order]
    return {"dev": ranked[:N_DEV_PAIRS], "test": ranked[N_DEV_PAIRS:N_DEV_PAIRS + N_TEST_PAIRS]}


def two_category_objective(run, held_out: torch.Tensor, pair_set: str,
                           timeout: Optional[float] = None) -> tuple[Callable[[int], ParetoObjective], dict]:
    """The built-in two-objective problem: seed i maximizes `[p(a | x), p(b | x)]` for pair i % n of the `pair_set`
    ("dev" or "test", `category_pairs`), the classifier trained once on the held-out rows `held_out: [K, D]` (as
    for `category`), the reference point (0, 0). Returns `make(seed)` and notes: the pairs and, per pair, how many
    held-out rows have both probabilities >= 0.5 (and >= 0.25), the best held-out row's smaller probability, the
    best smaller probability that 4 held-out rows pairwise below cosine 0.7 all reach, and the held-out rows' own
    hypervolume."""
    classifier, _ = _classifier(run, held_out, "two-category")
    pairs = category_pairs()[pair_set]
    unknown = sorted({c for pair in pairs for c in pair if c not in classifier.categories})
    if unknown:
        raise ObjectiveError(f"--objective two-category: {', '.join(unknown)} had too few held-out rows for the "
                             "classifier (merged into 'other'); train the prior with more held-out rows "
                             "(--n-val, --n-test)")
    with torch.no_grad():
        probabilities = classifier.probabilities(held_out.float()).double()
    facts = []
    for a, b in pairs:
        real = probabilities[:, [classifier.categories.index(a), classifier.categories.index(b)]]
        facts.append({"pair": [a, b], "held_out_rows_both_at_least_0.5": int((real >= 0.5).all(1).sum()),
                      "held_out_rows_both_at_least_0.25": int((real >= 0.25).all(1).sum()),
                      "best_held_out_min_probability": float(real.min(1).values.max()),
                      "held_out_hypervolume": hypervolume(real, torch.zeros(2)),
                      # what 4 different real rows all reach (`report.k_diverse_best`): a search's 4-diverse best's
                      # yardstick
                      "held_out_4_diverse_min_probability": k_diverse_best_of(held_out.double().numpy(),
                                                                              real.min(1).values.numpy())})
    objectives = [ParetoObjective([Objective(_probability(classifier, c), f"category[{c}]", timeout, optimum=1.0)
                                   for c in pair], ref_point=[0.0, 0.0]) for pair in pairs]
    notes = {"pair_set": pair_set, "classifier_accuracy": classifier.held_out_accuracy,
             "pair_rule": f"{N_DEV_PAIRS} dev and {N_TEST_PAIRS} test pairs, disjoint, drawn once (seed "
                          f"{PAIR_SPLIT_SEED}) from the pairs of {', '.join(PAIR_CATEGORIES)}; seed i maximizes both "
                          f"probabilities of pair i % {len(pairs)} of the {pair_set} set, reference point (0, 0); "
                          "the held-out rows' facts are on the rows the classifier was trained on",
             "pairs": facts}
    return (lambda seed: objectives[seed % len(objectives)]), notes
