"""ODE sampling of velocity fields: solvers with NFE counts and step hooks, generation, inversion."""
from scaleflow.sampling.sample import SampleBatch, generate, invert, reconstruction_errors, sample_noise
from scaleflow.sampling.solvers import SOLVERS, SolveResult, integrate
from scaleflow.sampling.velocity import VelocityField

__all__ = ["SOLVERS", "SampleBatch", "SolveResult", "VelocityField", "generate", "integrate", "invert",
           "reconstruction_errors", "sample_noise"]
