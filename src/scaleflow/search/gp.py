"""The surrogate of guided search: a BoTorch GP over embeddings, its acquisitions, and guides made of them.

Set up as BoTorch >= 0.12 recommends for hundreds of dimensions (FIELD_NOTES.md): `SingleTaskGP` with
its dimension-scaled lengthscale prior, a `Normalize` input transform (the GP assumes the unit cube),
standardized outcomes, float64, and log forms of the improvement acquisitions. Optionally the GP sees a
PCA projection of the embeddings (`Projection`, fitted on the prior's training rows: the few scored
points cannot estimate directions themselves).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

# qlognehvi: the hypervolume acquisition of a search with several objectives (`search.pareto_gp`).
ACQUISITIONS = ("ucb", "logei", "qlognei", "mean", "thompson", "qlognehvi")
UCB_BETA = 2.0  # UCB = mean + sqrt(beta) * sigma
UCB_MIN_VARIANCE = 1e-12  # BoTorch's floor under the posterior variance in its analytic acquisitions
CLOSED_FORM_ACQUISITIONS = ("ucb", "mean")  # computed here (`closed_form_acquisition`), equal to BoTorch's
SCORE_UNITS = ("ucb", "mean", "thompson")  # acquisitions in the objective's units (the log-EIs are not)


@dataclass
class Projection:
    """`z = (x - mean) @ components.T`: `[..., D] -> [..., k]`, the top-k principal directions of a
    reference set (float64)."""

    mean: Tensor
    components: Tensor

    @classmethod
    def fit(cls, rows: Tensor, k: int) -> "Projection":
        """The top `k` principal directions of `rows: [N, D]`."""
        if not 1 <= k <= min(rows.shape):
            raise ValueError(f"PCA dimension must be between 1 and {min(rows.shape)}; got {k}")
        x = rows.detach().to(torch.float64)
        mean = x.mean(0)
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        return cls(mean, vh[:k].contiguous())

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    def __call__(self, x: Tensor) -> Tensor:
        return (x.to(torch.float64) - self.mean) @ self.components.T


@dataclass
class Surrogate:
    """A fitted GP and what it was fitted on.

    Attributes:
        model: the BoTorch `SingleTaskGP` (inputs: projected embeddings when `projection` is set).
        train_x: `[N, D]` the scored embeddings (original space, float64).
        train_y: `[N]` their scores.
        projection: the PCA projection the GP sees, or None.
    """

    model: object
    train_x: Tensor
    train_y: Tensor
    projection: Optional[Projection] = None

    def inputs(self, x: Tensor) -> Tensor:
        """What the GP takes for embeddings `x: [..., D]`: `[..., D or k]` float64."""
        return self.projection(x) if self.projection is not None else x.to(torch.float64)

    @property
    def score_std(self) -> float:
        """Standard deviation of the observed scores (the unit of the guide's sigma)."""
        std = float(self.train_y.std()) if self.train_y.numel() > 1 else 0.0
        return std if std > 0 else 1.0

    def posterior_std(self, x: Tensor) -> Tensor:
        """`[B]` posterior standard deviation at `x: [B, D]`, in units of the observed scores' spread."""
        variance = self.model.posterior(self.inputs(x)).variance.reshape(x.shape[0])
        return variance.clamp_min(0).sqrt() / self.score_std


def gp_hyperparameters(surrogate: "Surrogate") -> dict:
    """The fitted kernel, mean and noise of a surrogate (not its data or its transforms' statistics), for
    `fit_gp(..., hyperparameters=...)`."""
    model = surrogate.model
    return {part: {k: v.detach().clone() for k, v in getattr(model, part).state_dict().items()}
            for part in ("covar_module", "mean_module", "likelihood")}


def fit_gp(x: Tensor, y: Tensor, projection: Optional[Projection] = None,
           hyperparameters: Optional[dict] = None, start: Optional[dict] = None) -> Surrogate:
    """Fit a `SingleTaskGP` to scores `y: [N]` of embeddings `x: [N, D]` (original space).

    Marginal-likelihood fit with BoTorch's `fit_gpytorch_mll` (L-BFGS); its warnings about fits that
    stopped early are kept quiet (a slightly unconverged GP still ranks points). With `hyperparameters`
    (`gp_hyperparameters` of an earlier fit) nothing is fitted: the GP takes them and conditions on `x, y`
    (the input normalization and outcome standardization are still this data's). With `start` (the same
    kind of dict) the fit starts from those values instead of the priors' defaults (a warm start: a few
    more rows move the optimum little, so L-BFGS stops sooner)."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"fit_gp needs x [N, D] and y [N]; got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"fit_gp needs at least 2 scored points; got {x.shape[0]}")
    train_x = x.detach().to(torch.float64)
    train_y = y.detach().to(torch.float64)
    inputs = projection(train_x) if projection is not None else train_x
    model = SingleTaskGP(inputs, train_y.unsqueeze(-1), input_transform=Normalize(d=inputs.shape[1]),
                         outcome_transform=Standardize(m=1))
    if hyperparameters is not None:
        for part, state in hyperparameters.items():
            getattr(model, part).load_state_dict(state)
        model.eval()
        return Surrogate(model, train_x, train_y, projection)
    for part, state in (start or {}).items():
        getattr(model, part).load_state_dict(state)
    # A fit that stops early is retried from hyperparameters drawn from their priors with torch's global
    # generator: seeded here, a resumed search fits what an uninterrupted one did.
    with warnings.catch_warnings(), torch.random.fork_rng():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    model.eval()
    return Surrogate(model, train_x, train_y, projection)


def make_acquisition(name: str, surrogate: Surrogate):
    """A BoTorch acquisition on `surrogate` taking GP inputs `[b, q, d]` -> `[b]`.

    `ucb`: mean + sqrt(2) sigma; `logei`: log expected improvement over the best score; `qlognei`: log
    noisy EI (the scored points as baseline); `mean`: the posterior mean (pure exploitation); `qlognehvi`: log
    noisy expected hypervolume improvement, for a `pareto_gp.ParetoSurrogate` (several objectives).
    (`thompson` is not an acquisition function: see `ThompsonGuide`.)"""
    from botorch.acquisition import (LogExpectedImprovement, PosteriorMean, UpperConfidenceBound,
                                     qLogNoisyExpectedImprovement)

    if name == "qlognehvi":
        from scaleflow.search.pareto_gp import hypervolume_acquisition  # (it imports this module)

        return hypervolume_acquisition(surrogate)
    model = surrogate.model
    if name == "ucb":
        return UpperConfidenceBound(model, beta=UCB_BETA)
    if name == "logei":
        return LogExpectedImprovement(model, best_f=surrogate.train_y.max())
    if name == "qlognei":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return qLogNoisyExpectedImprovement(model, X_baseline=surrogate.inputs(surrogate.train_x),
                                                prune_baseline=True)
    if name == "mean":
        return PosteriorMean(model)
    raise ValueError(f"unknown acquisition {name!r}; choose one of {', '.join(a for a in ACQUISITIONS if a != 'thompson')}")


def acquisition_values(surrogate: Surrogate, acquisition: str, x: Tensor, seed: int = 0) -> Tensor:
    """`[N]` float64: how `acquisition` ranks candidates `x: [N, D]` (original space), each alone (q = 1),
    without gradients. `thompson` ranks by one joint draw from the GP posterior over the N candidates
    (seeded by `seed`), as Thompson sampling picks among a finite set; the others are their BoTorch
    acquisition (`make_acquisition`)."""
    z = surrogate.inputs(x)
    # Seeded whatever the caller's generator state: Thompson's draw and qLogNEI's Monte Carlo base samples
    # (and its baseline pruning) come from the global generator, so a resumed search ranks as the first did.
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        if acquisition == "thompson":
            return surrogate.model.posterior(z).rsample().reshape(x.shape[0]).double()
        if acquisition in CLOSED_FORM_ACQUISITIONS:
            return closed_form_acquisition(surrogate, acquisition, z)[0].double()
        return make_acquisition(acquisition, surrogate)(z.unsqueeze(1)).reshape(x.shape[0]).double()


def closed_form_acquisition(surrogate: Surrogate, acquisition: str, z: Tensor) -> tuple[Tensor, Tensor]:
    """BoTorch's `UpperConfidenceBound` (`ucb`) or `PosteriorMean` (`mean`) of each row of GP inputs `z: [B, d]`
    alone, and its posterior sigma: `[B]` each, differentiable. The same values as the BoTorch acquisitions on
    `[B, 1, d]`, from one joint posterior over the B rows: one `[B, N]` kernel instead of B batched copies of
    the N training rows, whose backward pass was most of a guided batch's time (BENCHMARKS.md)."""
    posterior = surrogate.model.posterior(z)
    mean = posterior.mean.reshape(z.shape[0])
    sd = posterior.variance.reshape(z.shape[0]).clamp_min(UCB_MIN_VARIANCE).sqrt()
    return (mean + UCB_BETA ** 0.5 * sd if acquisition == "ucb" else mean), sd


class AcquisitionGuide:
    """A guide (`search.guidance.Guide`) made of an acquisition on a fitted GP: each row of `x: [B, D]`
    (original space) gets the acquisition value of that point alone (q = 1) and the GP's sigma there."""

    def __init__(self, surrogate: Surrogate, acquisition: str = "ucb") -> None:
        self.surrogate, self.name = surrogate, acquisition
        self.acquisition = None if acquisition in CLOSED_FORM_ACQUISITIONS else make_acquisition(acquisition, surrogate)

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.surrogate.inputs(x)
        if self.name in CLOSED_FORM_ACQUISITIONS:  # both in units of the scores' spread (SCORE_UNITS)
            value, sd = closed_form_acquisition(self.surrogate, self.name, z)
            return (value / self.surrogate.score_std).to(x.dtype), (sd.detach() / self.surrogate.score_std).to(x.dtype)
        value = self.acquisition(z.unsqueeze(1)).reshape(x.shape[0])
        if self.name in SCORE_UNITS:  # in units of the scores' spread: the strength means the same for any objective
            value = value / self.surrogate.score_std
        return value.to(x.dtype), self.surrogate.posterior_std(x).to(x.dtype)


class ThompsonGuide:
    """A guide whose row i follows its own draw from the GP posterior (a pathwise, differentiable sample
    function: BoTorch's `draw_matheron_paths`). Rows of a batch chase different plausible maxima, which
    keeps a guided batch diverse where one acquisition would pull every row to the same point."""

    def __init__(self, surrogate: Surrogate, n_paths: int, seed: int = 0) -> None:
        from botorch.sampling.pathwise import draw_matheron_paths

        self.surrogate, self.n_paths = surrogate, n_paths
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.paths = draw_matheron_paths(surrogate.model, sample_shape=torch.Size([n_paths]))

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[0] != self.n_paths:
            raise ValueError(f"a Thompson guide drawn for {self.n_paths} rows was given {x.shape[0]}")
        z = self.surrogate.inputs(x).unsqueeze(1)  # [B, 1, d]: row i against path i
        value = self.paths(z).reshape(self.n_paths, -1)[:, 0] / self.surrogate.score_std
        return value.to(x.dtype), self.surrogate.posterior_std(x).to(x.dtype)


def make_guide(surrogate: Surrogate, acquisition: str, batch: int, seed: int = 0):
    """The guide for one batch of `batch` guided samples: an `AcquisitionGuide`, or a `ThompsonGuide`."""
    if acquisition == "thompson":
        return ThompsonGuide(surrogate, batch, seed)
    return AcquisitionGuide(surrogate, acquisition)
