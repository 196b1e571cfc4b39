"""A small MLP that tells an embedding's category, for search objectives such as "make the
generated embedding a `noun.animal` gloss".

The classifier works in the original embedding space (`[N, D]`, e.g. the 384-D MiniLM rows of
the built-in dataset, before any normalization a flow model applies) and is differentiable
w.r.t. its input, so a search can follow `probability(x, category)` or its gradient.

Train it on rows held apart from the prior's (flow model's) training rows: a classifier that
has seen the prior's rows would reward reproducing them.

    >>> clf = train_category_classifier(emb[rows], [labels[i] for i in rows], seed=0)
    >>> clf.probability(x, "noun.animal")          # [N], in [0, 1]
    >>> clf.save("clf.safetensors"); CategoryClassifier.load("clf.safetensors")
"""
from __future__ import annotations

import collections
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from scaleflow.files import read_safetensors, write_safetensors

OTHER = "other"  # the class that categories with too few training rows are merged into
FORMAT = "scaleflow-category-classifier-v1"


class CategoryMLP(nn.Module):
    """`x [N, D] -> logits [N, C]`: standardize with the training rows' per-dimension mean/std,
    then Linear(D, H) -> GELU -> Dropout -> Linear(H, C).

    Standardizing matters: unit-norm 384-D rows have coordinates of about 0.05, far below the
    scale the default Linear init expects; mean/std are buffers, so they are saved with the weights.
    """

    def __init__(self, dim: int, hidden: int, n_classes: int, dropout: float = 0.1):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


@dataclass
class CategoryClassifier:
    """A trained `CategoryMLP` and the names of its classes.

    Attributes:
        model: `x [N, D] -> logits [N, C]`, in eval mode (no dropout).
        categories: the C class names, logit j is `categories[j]`; may end with "other".
        held_out_accuracy: accuracy (all C classes) on the 10% of the given rows kept out of
            training, at the step that was kept (the best held-out loss).
    """

    model: nn.Module
    categories: list[str]
    held_out_accuracy: float

    @property
    def dim(self) -> int:
        return int(self.model.mean.shape[0])

    def _index(self, category: str) -> int:
        try:
            return self.categories.index(category)
        except ValueError:
            raise ValueError(
                f"unknown category {category!r}; the classifier knows: {', '.join(self.categories)}"
            ) from None

    def logits(self, x: Tensor) -> Tensor:
        """`x [N, D]` (or `[D]`) -> logits `[N, C]` (or `[C]`); differentiable w.r.t. x.

        x is cast to the model's dtype (float32; a float16 or float64 input works); it must be on
        the model's device (see `to`).
        """
        return self.model(x.to(self.model.mean.dtype))

    def probabilities(self, x: Tensor) -> Tensor:
        """`x [N, D]` -> softmax over the C categories, `[N, C]`; rows sum to 1."""
        return torch.softmax(self.logits(x), dim=-1)

    def probability(self, x: Tensor, category: str) -> Tensor:
        """`x [N, D]` -> probability of `category`, `[N]` in [0, 1]; differentiable w.r.t. x.

        Raises:
            ValueError: `category` is not one of `categories` (the message lists them; a category
                merged into "other" at training time is not known by its own name).
        """
        return self.probabilities(x)[..., self._index(category)]

    def log_probability(self, x: Tensor, category: str) -> Tensor:
        """`log probability(x, category)`, `[N]`, computed stably (log-softmax): a better search
        objective than the probability where that saturates near 0 or 1."""
        return torch.log_softmax(self.logits(x), dim=-1)[..., self._index(category)]

    def predict(self, x: Tensor) -> list[str]:
        """The most probable category of each row of `x [N, D]`."""
        with torch.no_grad():
            return [self.categories[i] for i in self.logits(x).argmax(dim=-1).tolist()]

    def to(self, device: str | torch.device) -> CategoryClassifier:
        """Move the model to `device` (in place) and return self."""
        self.model.to(device)
        return self

    # --- save / load -----------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, str]]:
        """(tensors, metadata): the model's weights and buffers, and string metadata (the category
        names as JSON, the sizes, the held-out accuracy), as safetensors stores them."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        hidden = int(tensors["net.0.weight"].shape[0])
        metadata = {
            "format": FORMAT,
            "categories": json.dumps(self.categories),
            "dim": str(self.dim),
            "hidden": str(hidden),
            "held_out_accuracy": repr(float(self.held_out_accuracy)),
        }
        return tensors, metadata

    @classmethod
    def from_state_dict(cls, tensors: dict[str, Tensor], metadata: dict[str, str]) -> CategoryClassifier:
        """Rebuild a classifier from `state_dict()`'s output (or a loaded file's)."""
        if metadata.get("format") != FORMAT:
            raise ValueError(f"not a category classifier (metadata format {metadata.get('format')!r}, "
                             f"expected {FORMAT!r})")
        categories = json.loads(metadata["categories"])
        model = CategoryMLP(int(metadata["dim"]), int(metadata["hidden"]), len(categories))
        model.load_state_dict(tensors)
        model.eval()
        return cls(model, categories, float(metadata["held_out_accuracy"]))

    def save(self, path: str | Path) -> None:
        """Write one safetensors file (weights; category names and sizes in its metadata)."""
        tensors, metadata = self.state_dict()
        write_safetensors(path, tensors, metadata=metadata)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> CategoryClassifier:
        """Read a file written by `save`."""
        tensors = read_safetensors(path, device=device)
        try:
            with safe_open(str(path), framework="pt") as fh:
                metadata = fh.metadata() or {}
        except (OSError, SafetensorError) as err:  # read_safetensors above already named the usual cases
            raise ValueError(f"{path}: unreadable safetensors metadata ({err})") from None
        try:
            return cls.from_state_dict(tensors, metadata)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


def merge_rare_categories(labels: list[str], min_count: int) -> tuple[list[str], list[str]]:
    """Replace labels seen fewer than `min_count` times by "other".

    Returns:
        (merged labels, class names): the class names sorted, "other" last when it occurs.
    """
    counts = collections.Counter(labels)
    merged = [lab if counts[lab] >= min_count else OTHER for lab in labels]
    kept = sorted({lab for lab in merged if lab != OTHER})
    categories = kept + ([OTHER] if OTHER in merged else [])
    return merged, categories


def train_category_classifier(
    embeddings: Tensor | np.ndarray,
    labels: list[str],
    seed: int = 0,
    min_count: int = 20,
    hidden: int = 256,
    max_epochs: int = 60,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    dropout: float = 0.1,
    held_out_fraction: float = 0.1,
    patience: int = 8,
) -> CategoryClassifier:
    """Train a `CategoryClassifier` on the given rows (on the CPU, a few seconds for ~3,000 rows).

    Give it rows held apart from the prior's training rows. Categories with fewer than
    `min_count` examples among the given rows are merged into one class "other" (too few rows
    to learn them; they are then not known by their own names). A random `held_out_fraction`
    (10%) of the rows is kept out of training: the model is trained with AdamW on mini-batches
    for at most `max_epochs` epochs, evaluated on the held-out rows after every epoch, and the
    weights with the lowest held-out cross-entropy are kept (stopping after `patience` epochs
    without improvement).

    Deterministic: the same inputs and `seed` give the same weights (on the same machine and
    thread count). The caller's global torch RNG is left as it was.

    Args:
        embeddings: `[N, D]` float rows in the original embedding space (tensor or array).
        labels: N category names, labels[i] for row i.
        seed: seeds the split, the initialization, the batch order and dropout.
        min_count: the fewest rows a category needs to get its own class.
        hidden, dropout: the MLP's hidden width and dropout rate.
        max_epochs, batch_size, lr, weight_decay, patience: the optimization (AdamW).
        held_out_fraction: share of the rows kept out for early stopping and the accuracy.

    Returns:
        The trained classifier on the CPU, in eval mode, with `held_out_accuracy` set.

    Raises:
        ValueError: shapes/lengths disagree, too few rows, max_epochs < 1, or fewer than two
            classes remain.
    """
    x = embeddings if isinstance(embeddings, Tensor) else torch.from_numpy(np.asarray(embeddings))
    x = x.detach().to("cpu", torch.float32)  # trained on the CPU: small enough, and reproducible
    if x.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {tuple(x.shape)}")
    if len(labels) != x.shape[0]:
        raise ValueError(f"{len(labels)} labels for {x.shape[0]} rows")
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}")
    merged, categories = merge_rare_categories(list(labels), min_count)
    if len(categories) < 2:
        raise ValueError(f"fewer than two classes with min_count={min_count}: {categories}")
    index = {c: i for i, c in enumerate(categories)}
    y = torch.tensor([index[lab] for lab in merged], dtype=torch.long)

    n = x.shape[0]
    n_held = max(1, int(round(held_out_fraction * n)))
    if n - n_held < 2:
        raise ValueError(f"{n} rows are too few to train and hold out {held_out_fraction:.0%}")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    held, train = perm[:n_held], perm[n_held:]
    x_tr, y_tr, x_ho, y_ho = x[train], y[train], x[held], y[held]

    # fork_rng: init and dropout draw from the global RNG; seed it here without touching the caller's
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CategoryMLP(x.shape[1], hidden, len(categories), dropout)
        model.mean.copy_(x_tr.mean(0))
        model.std.copy_(x_tr.std(0).clamp_min(1e-6))  # a constant dimension would divide by 0
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        best_loss, best_state, best_acc, bad_epochs = math.inf, None, 0.0, 0
        for _ in range(max_epochs):
            model.train()
            order = torch.randperm(len(train), generator=gen)
            for start in range(0, len(train), batch_size):
                batch = order[start:start + batch_size]
                loss = loss_fn(model(x_tr[batch]), y_tr[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                logits = model(x_ho)
                held_loss = loss_fn(logits, y_ho).item()
                held_acc = (logits.argmax(-1) == y_ho).float().mean().item()
            if held_loss < best_loss:
                best_loss, best_acc, bad_epochs = held_loss, held_acc, 0
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
                if bad_epochs >= patience:
                    break
    model.load_state_dict(best_state)
    model.eval()
    return CategoryClassifier(model, categories, best_acc)
