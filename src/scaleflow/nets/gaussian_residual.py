"""A network that predicts only what a Gaussian misses: `x1_hat = E_gauss[x1 | x_t] + net(x_t, t)`.

At 1,000 rows a network whose last layer is narrower than the data (dit tiny: 256 hidden units for 384-D
rows) can only place its x1 predictions, and so its samples, near a subspace of that width; early stopped,
it learns fewer directions still. On the built-in data the samples' covariance past its 200th eigenvalue
sums to 1.3 where the training rows' sums to 26, and FD binds at ~2.3x its floor (README, "Small data").
Adding the exact denoiser of a Ledoit-Wolf Gaussian fitted to the training rows (`reference.mixture`, in
closed form for the straight path from N(0, I)) gives every direction the rows' variance from the first
step: with AdaLN-Zero's zero-initialized output (dit) the run starts as that Gaussian (the `gaussian`
reference prior where it chooses Ledoit-Wolf), and the network learns the non-Gaussian structure on top.
"""
from __future__ import annotations

import torch
from torch import nn

from scaleflow.reference.mixture import GaussianMixturePrior


class GaussianResidual(nn.Module):
    """`forward(x: [B, D], t: [B]) -> [B, D]`: a fitted Gaussian's x1-prediction plus `net`'s.

    The Gaussian is a one-component `GaussianMixturePrior` held as buffers (saved with the weights, never
    trained); `fit_gaussian_residual` fills it. `config`, `arch` and `scale` are the wrapped network's (transfer
    and model.json describe the network; the run's config says `residual: gaussian`).
    """

    def __init__(self, net: nn.Module, gaussian: GaussianMixturePrior):
        super().__init__()
        if gaussian.n_components != 1:
            raise ValueError(f"GaussianResidual takes one Gaussian; got {gaussian.n_components} components")
        self.net, self.gaussian = net, gaussian
        for name in ("config", "arch", "scale"):
            if hasattr(net, name):
                setattr(self, name, getattr(net, name))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # the closed form in float64 under bf16 training too
            prior = self.gaussian(x, t)
        return prior + self.net(x, t)


def fit_gaussian_residual(rows: torch.Tensor) -> GaussianMixturePrior:
    """The Ledoit-Wolf Gaussian of `rows: [N, D]` (the run's normalized training rows) as a one-component
    mixture (float64 buffers, on `rows`' device)."""
    from sklearn.covariance import LedoitWolf

    fitted = LedoitWolf().fit(rows.detach().double().cpu().numpy())
    gaussian = GaussianMixturePrior(rows.shape[1], 1, covariance="ledoit-wolf", shrinkage=float(fitted.shrinkage_))
    gaussian.set_components(torch.ones(1), torch.from_numpy(fitted.location_)[None],
                            torch.from_numpy(fitted.covariance_)[None])
    return gaussian.to(rows.device)


def unfitted_gaussian_residual(dim: int) -> GaussianMixturePrior:
    """A one-component Gaussian of dimension `dim` to load a saved run's buffers into."""
    return GaussianMixturePrior(dim, 1)


# A run starts as its Gaussian, and its samples sit at the Gaussian's level until the network leaves it (steps 700-900
# at 1-2K rows with the small-data recipe, later or never under other schedules: README, "Small data"). Best weights
# within this margin of the first validation's worst ratio have not left it.
PLATEAU_MARGIN = 0.05


def plateau_record(val_worst_ratios: list, best_score: float) -> dict:
    """Whether a run chosen by its samples left its Gaussian: {"left_the_gaussian": the chosen weights' validation
    worst ratio `best_score` is above the first validation's (the Gaussian's level) by PLATEAU_MARGIN,
    "gaussian_val_worst_ratio": that level}, from the validations' ratios in order (None entries skipped); {} when
    there are none."""
    scores = [score for score in val_worst_ratios if score is not None]
    if not scores:
        return {}
    return {"left_the_gaussian": bool(best_score >= scores[0] + PLATEAU_MARGIN), "gaussian_val_worst_ratio": scores[0]}
