"""Reference priors: classical density models (shrunk Gaussian, GMM, KDE) and the training-free smoothed
closed-form flow, built into run folders like any trained prior and judged by the same ruler.

Each is an `nn.Module` predicting x1 in closed form (`forward(x: [B, D], t: [B]) -> [B, D]`, the
denoiser of the exact flow from N(0, I) to its density), so `sample`, `eval`, `compare`, sweeps and
`optimize` use them unchanged; the Gaussian, GMM and KDE also have an exact `log_prob` and `sample`.
"""
from scaleflow.reference.closed_form import ClosedFormPrior
from scaleflow.reference.fit import (FIT_OPTIONS, REFERENCE_PRIORS, FitResult, ReferenceFitError, fit_reference,
                                     sample_reference)
from scaleflow.reference.kde import KernelDensityPrior
from scaleflow.reference.mixture import GaussianMixturePrior

__all__ = ["ClosedFormPrior", "FIT_OPTIONS", "FitResult", "GaussianMixturePrior", "KernelDensityPrior",
           "REFERENCE_PRIORS", "ReferenceFitError", "fit_reference", "sample_reference"]
