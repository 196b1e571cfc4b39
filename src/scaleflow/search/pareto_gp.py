"""The surrogate of a Pareto search: one GP per objective, and the hypervolume acquisition on them.

Each objective's scores get a `SingleTaskGP` built as `gp.fit_gp` builds one (`Normalize` inputs, standardized
outcomes, float64); together they are a BoTorch `ModelListGP`, on which qLogNEHVI (log noisy expected
hypervolume improvement; Daulton et al. 2021, Ament et al. 2023) values a point by how much it is expected to
grow the hypervolume of what was scored above the reference point. `ParetoSurrogate` has the parts of
`gp.Surrogate` that guides and filters use, so `gp.AcquisitionGuide` and `gp.acquisition_values` take it with
acquisition "qlognehvi" as they take a single GP.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from scaleflow.search.gp import Projection, Surrogate, fit_gp

PARETO_ACQUISITION = "qlognehvi"


@dataclass
class ParetoSurrogate:
    """One fitted GP per objective, as a `ModelListGP`, and the reference point.

    Attributes:
        surrogates: the M single-objective `gp.Surrogate`s (same inputs, same projection).
        model: their BoTorch `ModelListGP` (posterior `[..., M]` in the objectives' units).
        ref_point: `[M]` float64, in the objectives' units.
    """

    surrogates: list[Surrogate]
    model: object
    ref_point: Tensor

    @property
    def train_x(self) -> Tensor:
        return self.surrogates[0].train_x

    def inputs(self, x: Tensor) -> Tensor:
        """What the GPs take for embeddings `x: [..., D]` (`gp.Surrogate.inputs`)."""
        return self.surrogates[0].inputs(x)

    @property
    def score_std(self) -> float:
        return 1.0  # qLogNEHVI is a log-improvement, in no objective's units: the guide takes it as it is

    def posterior_std(self, x: Tensor) -> Tensor:
        """`[B]` mean over objectives of the posterior std at `x: [B, D]`, each in units of its scores' spread."""
        return torch.stack([s.posterior_std(x) for s in self.surrogates]).mean(0)


def fit_pareto_gp(x: Tensor, objectives: Tensor, ref_point: Tensor,
                  projection: Optional[Projection] = None) -> ParetoSurrogate:
    """Fit one GP per column of the score vectors `objectives: [N, M]` of embeddings `x: [N, D]` (`gp.fit_gp`)."""
    from botorch.models import ModelListGP

    if objectives.ndim != 2 or objectives.shape[1] < 2:
        raise ValueError(f"acquisition {PARETO_ACQUISITION} needs 2 or more objectives; got score vectors of shape "
                         f"{tuple(objectives.shape)}")
    surrogates = [fit_gp(x, objectives[:, m], projection) for m in range(objectives.shape[1])]
    return ParetoSurrogate(surrogates, ModelListGP(*[s.model for s in surrogates]), ref_point.double())


def hypervolume_acquisition(surrogate: ParetoSurrogate):
    """BoTorch's `qLogNoisyExpectedHypervolumeImprovement` on `surrogate`: GP inputs `[b, q, d]` -> `[b]`, with
    the scored points as its baseline (pruned to those that may be on the front) and the reference point in the
    objectives' units. Its Monte Carlo samples come from torch's global generator: the caller seeds it."""
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement

    if not isinstance(surrogate, ParetoSurrogate):
        raise ValueError(f"acquisition {PARETO_ACQUISITION} needs several objectives (repeat --objective)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return qLogNoisyExpectedHypervolumeImprovement(surrogate.model, ref_point=surrogate.ref_point,
                                                       X_baseline=surrogate.inputs(surrogate.train_x),
                                                       prune_baseline=True)
