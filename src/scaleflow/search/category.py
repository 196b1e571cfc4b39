"""The built-in `category` objective: the probability of a WordNet lexicographer category (e.g.
`noun.animal`) under a small MLP classifier trained on the held-out rows of the built-in data.

Nonlinear, and easy to fool off the data manifold (a classifier is confident far from any sentence),
which is what the validity rule is for. Needs the built-in data, whose rows carry their categories.
"""
from __future__ import annotations

from typing import Optional

import torch

from scaleflow.data.builtin import is_builtin, load_builtin_categories
from scaleflow.search.category_classifier import train_category_classifier
from scaleflow.search.objectives import Objective, ObjectiveError


def category_objective(run, held_out: torch.Tensor, category: str,
                       timeout: Optional[float] = None) -> tuple[Objective, dict]:
    """The objective `x: [N, D] -> p(category | x): [N]` for a run trained on the built-in data, with the
    classifier trained on the run's held-out rows `held_out: [K, D]` (validation then test split, original
    space); and notes for the records (the classifier's held-out accuracy, the category's row counts)."""
    source = run.config.data
    if not is_builtin(source):
        raise ObjectiveError(f"--objective category needs a run trained on the built-in data (its rows carry "
                             f"WordNet categories); {run.path} was trained on {source}")
    name = source.partition(":")[2] or "wordnet-minilm"
    labels = load_builtin_categories(name)
    splits = run.splits
    held_labels = [labels[i] for i in list(splits.val) + list(splits.test)]
    classifier = train_category_classifier(held_out, held_labels, seed=0)
    if category not in classifier.categories:
        raise ObjectiveError(f"--category {category!r}: not a category of the classifier; known: "
                             f"{', '.join(classifier.categories)}")

    def probability(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return classifier.probability(x.float(), category)

    notes = {"category": category, "classifier_accuracy": classifier.held_out_accuracy,
             "category_rows_held_out": sum(label == category for label in held_labels),
             "category_rows_train": sum(labels[i] == category for i in splits.train)}
    return Objective(probability, f"category[{category}]", timeout, optimum=1.0), notes
