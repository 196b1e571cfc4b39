"""Judge a trained run by its samples: every metric against the test split, next to its real-vs-real
floor, both with bootstrap intervals. Written to the run's `eval.json`.

Spaces: distribution metrics (FD, MMD, PRDC, memorization), losses, reconstruction and straightness
are computed in the normalized space the network was trained in; diversity, validity and the
norm/cosine statistics in the original embedding space, where cosine similarity means what users expect.

Floors: the same metric for a draw of n real *training* rows against the test split, n being the number
of samples (see `evaluation.scores`). When n exceeds the training rows, both are capped at the training
rows (`settings["n_requested"]` keeps the ask), so value and floor always share one sample size.
Losses and path metrics have no such floor (null); val_loss carries the constant predictor's loss as
`baseline` instead.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

import torch

from scaleflow.evaluation.diversity import norm_and_cosine_stats
from scaleflow.evaluation.distribution import frechet_distance
from scaleflow.evaluation.scores import DEFAULT_K, entry, mean_ci, min_samples, score_samples
from scaleflow.flows.draws import make_validation_set, validation_coupling_batch
from scaleflow.reference.scoring import DEFAULT_REFERENCES, score_references
from scaleflow.sampling.sample import generate, reconstruction_errors, sample_noise
from scaleflow.sampling.sphere import project_to_sphere, sphere_radius
from scaleflow.sampling.solvers import integrate

METRICS = ("val_loss", "reconstruction_mse", "fd", "mmd", "precision", "recall", "density", "coverage",
           "memorization", "diversity", "validity", "nearest_cosine", "straightness")


@torch.no_grad()
def heldout_loss_per_row(model: torch.nn.Module, flow, x1: torch.Tensor, prediction: str, seed: int,
                         coupling_batch: int) -> tuple[torch.Tensor, float]:
    """Flow-matching loss of each held-out row `[N]` at one fixed (noise, t) draw, drawn exactly as the
    trainer draws its validation set (`coupling_batch` from `validation_coupling_batch`), and the
    constant predictor's loss on the same draws."""
    draws = make_validation_set(flow, x1, prediction, seed, coupling_batch)
    losses = [(model(x, t) - y).square().mean(1)
              for x, t, y in zip(draws.x_t.split(1024), draws.t.split(1024), draws.target.split(1024))]
    return torch.cat(losses), draws.baseline_loss


@torch.no_grad()
def straightness_per_row(trajectory: list[torch.Tensor]) -> torch.Tensor:
    """Mean squared deviation (per dimension) of each trajectory from the chord between its ends: `[N]`.

    0 for a perfectly straight path, which one Euler step would integrate exactly.
    """
    start, end, k = trajectory[0], trajectory[-1], len(trajectory) - 1
    deviations = [(x - (start + (i / k) * (end - start))).square().mean(1) for i, x in enumerate(trajectory)]
    return torch.stack(deviations).mean(0)


def nfe_curve(velocity: Callable, dim: int, reference: torch.Tensor, n: int, solvers: Sequence[str],
              steps: Sequence[int], seed: int, device: torch.device | str, noise_scale: float = 1.0) -> list[dict]:
    """Frechet distance to `reference` of `n` samples for each solver and step count (and dopri5)."""
    rows = []
    for solver in solvers:
        for s in ([0] if solver == "dopri5" else steps):
            batch = generate(velocity, n, dim, solver, max(s, 1), seed, device, noise_scale=noise_scale)
            rows.append({"solver": solver, "steps": s or None, "nfe": batch.nfe,
                         "fd": frechet_distance(batch.x, reference), "seconds": batch.seconds})
    return rows


NFE_SOLVERS = ("euler", "heun", "rk4", "dopri5")  # the quality-vs-steps curve's, by default
NFE_STEPS = (1, 2, 4, 8, 16, 32)
STRAIGHTNESS_ROWS = 1000  # trajectories kept in memory: steps x rows x D floats


def evaluate(run, n_samples: Optional[int] = None, solver: str = "heun", steps: int = 20, n_boot: int = 200,
             seed: int = 0, k: int = DEFAULT_K, nfe_solvers: Sequence[str] = NFE_SOLVERS,
             nfe_steps: Sequence[int] = NFE_STEPS, device: torch.device | str = "cpu",
             extrapolate: bool = True, noise_scale: float = 1.0,
             n_boot_inf: Optional[int] = None,
             references: Sequence[str] = DEFAULT_REFERENCES,
             project_sphere: bool = False) -> tuple[dict, torch.Tensor]:
    """Evaluate a loaded run (`training.run.load_run`) against its test split.

    Args:
        n_samples: samples to generate (default: as many as the test split has), at least
            `scores.min_samples(k)`; capped at the number of training rows (the floor's draw).
        noise_scale: temperature of the starting noise for the samples and the NFE curve (`generate`).
        extrapolate: also fit FD_inf and its floor with their intervals (`frechet.frechet_infinite_with_floor`):
            ~2 s of one CPU core for the fits at 1,000 samples in 384-D, ~13 s more for the interval's 10
            half-sample refits (benchmarks/bootstrap_cost.py); `n_boot_inf` sets their number (default
            `min(n_boot, frechet.FD_INF_RESAMPLES)`).
        references: reference priors fitted to the run's training rows and scored on the same test rows,
            real draw and n (`reference.scoring`, cached per data and split): the report's "reference".
        project_sphere: put the samples on the training rows' sphere (`sampling.sphere`); refused (ValueError)
            when the rows do not share one norm.

    Returns:
        The report `{metric: {"value", "ci": [lo, hi], "floor", "floor_ci", ...}}` for `METRICS`, plus
        "nfe_curve" (quality vs steps per solver), "stats" (norm/cosine statistics) and "settings"; and the
        generated samples `[n, D]` (normalized space) the metrics were computed on.
    """
    began = time.perf_counter()
    data = run.data()
    test, train = data.test.to(device), data.train.to(device)
    requested = n_samples or len(test)
    n = min(requested, len(train))
    if n < min_samples(k):
        raise ValueError(f"n_samples={requested}: evaluation needs at least {min_samples(k)} samples (and training "
                         f"rows; the run has {len(train)}): PRDC with k={k} compares each with its {k} nearest "
                         "neighbours")
    dim = test.shape[1]
    velocity = run.velocity
    batch = generate(velocity, n, dim, solver, steps, seed, device, noise_scale=noise_scale)
    generated = batch.x
    radius = sphere_radius(run.standardizer.inverse_transform(train))
    if project_sphere:
        if radius is None:
            raise ValueError("--project-sphere: the training rows do not share one norm (not a normalized encoder's)")
        generated = run.standardizer.transform(project_to_sphere(run.standardizer.inverse_transform(generated), radius))
    g = torch.Generator().manual_seed(seed + 1)
    real_draw = train[torch.randperm(len(train), generator=g)[:n].to(device)]
    val = data.val.to(device)
    out: dict[str, Any] = {}

    coupling = validation_coupling_batch(run.config.batch_size, len(train))
    losses, baseline = heldout_loss_per_row(run.model, run.flow, test, run.config.prediction, seed, coupling)
    out["val_loss"] = entry(*mean_ci(losses, n_boot, seed), baseline=baseline, split="test",
                            loss_space=run.config.prediction)
    rec = reconstruction_errors(velocity, test[:n], solver, steps)
    out["reconstruction_mse"] = entry(*mean_ci(rec, n_boot, seed), target=0.1)

    to_original = run.standardizer.inverse_transform  # the statistics the run was trained and samples with
    # Sample measures in one space for every run: the per-dimension standardization of the training rows
    # (a run trained in a whitening or a source's statistics is mapped into it; `Run.scoring_normalization`).
    scoring = run.scoring_normalization(data)
    s_generated, s_test, s_real, s_train, s_val, s_to_original = generated, test, real_draw, train, val, to_original
    if scoring is not None:
        move = lambda x: scoring.transform(to_original(x))  # noqa: E731
        s_generated, s_test, s_real, s_train, s_val = (move(x) for x in (generated, test, real_draw, train, val))
        s_to_original = scoring.inverse_transform
    out.update(score_samples(s_generated, s_test, s_real, s_train, s_to_original, n_boot, seed, k, extrapolate,
                             n_boot_inf))

    noise = noise_scale * sample_noise(n, dim, seed, device)[:STRAIGHTNESS_ROWS]
    trajectory = integrate(velocity, noise, solver=solver, steps=steps, return_trajectory=True).trajectory
    out["straightness"] = entry(*mean_ci(straightness_per_row(trajectory), n_boot, seed))
    out = {name: out[name] for name in METRICS}

    generated_raw, real_raw, test_raw = to_original(generated), to_original(real_draw), to_original(test)
    out["stats"] = {"generated_vs_test": norm_and_cosine_stats(generated_raw, test_raw),
                    "train_vs_test": norm_and_cosine_stats(real_raw, test_raw)}
    out["nfe_curve"] = (nfe_curve(velocity, dim, test, n, nfe_solvers, nfe_steps, seed, device, noise_scale)
                        if nfe_solvers else [])
    out["reference"] = score_references(s_train, s_val, s_test, s_real, s_to_original, seed, k, references)
    out["settings"] = {"n_requested": requested, "n_generated": n, "n_real_draw": n, "n_test": len(test),
                       "n_train": len(train), "solver": solver, "steps": steps, "nfe": batch.nfe, "bootstrap": n_boot,
                       "seed": seed, "k": k, "noise_scale": noise_scale, "rows_on_sphere": radius,
                       "project_sphere": project_sphere,
                       "scored_in": "the run's space" if scoring is None else "per-dimension standardization of the training rows",
                       "seconds": time.perf_counter() - began}
    return out, generated
