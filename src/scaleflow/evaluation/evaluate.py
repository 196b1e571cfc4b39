"""Judge a trained run by its samples: every metric against the test split, next to its real-vs-real
floor, with bootstrap intervals. Written to the run's `eval.json`.

Spaces: distribution metrics (FD, MMD, PRDC, memorization), losses, reconstruction and straightness
are computed in the normalized space the network was trained in; diversity and the norm/cosine
statistics in the original embedding space, where cosine similarity means what users expect.

Floors: the same metric for an equal-size draw of real *training* rows against the test split, so a
reader sees what "as good as real data" scores. Losses and path metrics have no such floor (null);
val_loss carries the constant predictor's loss as `baseline` instead.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

import torch

from scaleflow.evaluation.bootstrap import bootstrap_ci
from scaleflow.evaluation.distribution import frechet_distance, median_pairwise_distance, mmd_rbf, mmd_rbf_bootstrap
from scaleflow.evaluation.diversity import mean_pairwise_cosine_distance, norm_and_cosine_stats
from scaleflow.evaluation.memorization import memorization_rate, nearest_neighbor_distances
from scaleflow.evaluation.prdc import prdc_indicators
from scaleflow.flows.draws import make_validation_set, validation_coupling_batch
from scaleflow.sampling.sample import generate, reconstruction_errors, sample_noise
from scaleflow.sampling.solvers import integrate

METRICS = ("val_loss", "reconstruction_mse", "fd", "mmd", "precision", "recall", "density", "coverage",
           "memorization", "diversity", "straightness")


def _mean_ci(values: torch.Tensor, n_boot: int, seed: int) -> tuple[float, list[float]]:
    value, (lo, hi) = bootstrap_ci(lambda v: v.double().mean(), values, n_resamples=n_boot, seed=seed)
    return value, [lo, hi]


def _entry(value: float, ci: Sequence[float], floor: Optional[float] = None, **extra: Any) -> dict:
    return {"value": float(value), "ci": [float(ci[0]), float(ci[1])], "floor": None if floor is None else float(floor), **extra}


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
              steps: Sequence[int], seed: int, device: torch.device | str) -> list[dict]:
    """Frechet distance to `reference` of `n` samples for each solver and step count (and dopri5)."""
    rows = []
    for solver in solvers:
        for s in ([0] if solver == "dopri5" else steps):
            batch = generate(velocity, n, dim, solver, max(s, 1), seed, device)
            rows.append({"solver": solver, "steps": s or None, "nfe": batch.nfe,
                         "fd": frechet_distance(batch.x, reference), "seconds": batch.seconds})
    return rows


STRAIGHTNESS_ROWS = 1000  # trajectories kept in memory: steps x rows x D floats


def evaluate(run, n_samples: Optional[int] = None, solver: str = "heun", steps: int = 20, n_boot: int = 200,
             seed: int = 0, k: int = 5, nfe_solvers: Sequence[str] = ("euler", "heun", "rk4", "dopri5"),
             nfe_steps: Sequence[int] = (1, 2, 4, 8, 16, 32), device: torch.device | str = "cpu",
             ) -> tuple[dict, torch.Tensor]:
    """Evaluate a loaded run (`training.run.load_run`) against its test split.

    Returns:
        The report `{metric: {"value", "ci": [lo, hi], "floor", ...}}` for `METRICS`, plus "nfe_curve"
        (quality vs steps per solver), "stats" (norm/cosine statistics) and "settings"; and the
        generated samples `[n, D]` (normalized space) the metrics were computed on.
    """
    began = time.perf_counter()
    data = run.data()
    test, train = data.test.to(device), data.train.to(device)
    n = n_samples or len(test)
    dim = test.shape[1]
    velocity = run.velocity
    batch = generate(velocity, n, dim, solver, steps, seed, device)
    generated = batch.x
    g = torch.Generator().manual_seed(seed + 1)
    real_draw = train[torch.randperm(len(train), generator=g)[: min(n, len(train))].to(device)]
    out: dict[str, Any] = {}

    coupling = validation_coupling_batch(run.config.batch_size, len(train))
    losses, baseline = heldout_loss_per_row(run.model, run.flow, test, run.config.prediction, seed, coupling)
    out["val_loss"] = _entry(*_mean_ci(losses, n_boot, seed), baseline=baseline, split="test",
                             loss_space=run.config.prediction)
    rec = reconstruction_errors(velocity, test[:n], solver, steps)
    out["reconstruction_mse"] = _entry(*_mean_ci(rec, n_boot, seed), target=0.1)

    fd, fd_ci = bootstrap_ci(frechet_distance, generated, test, n_resamples=n_boot, seed=seed, correct_bias=True)
    out["fd"] = _entry(fd, fd_ci, frechet_distance(real_draw, test))
    # One kernel scale for value, floor and every resample, so they are comparable.
    bandwidths = [s * median_pairwise_distance(test) for s in (0.5, 1.0, 2.0)]
    value, ci = mmd_rbf_bootstrap(generated, test, bandwidths, n_boot, seed=seed)
    out["mmd"] = _entry(value, ci, mmd_rbf(real_draw, test, bandwidths), bandwidths=bandwidths)

    fake, floor = prdc_indicators(test, generated, k), prdc_indicators(test, real_draw, k)
    for name in ("precision", "recall", "density", "coverage"):
        value, ci = _mean_ci(fake[name], n_boot, seed)
        out[name] = _entry(value, ci, float(floor[name].double().mean()), k=k)

    memo = memorization_rate(generated, train, return_distances=True)
    copies = (memo["nn_distances"] < memo["threshold"]).double()
    held_out = float((nearest_neighbor_distances(test, train) < memo["threshold"]).double().mean())
    out["memorization"] = _entry(*_mean_ci(copies, n_boot, seed), held_out, rule=memo["rule"],
                                 nn_distance_quantiles=memo["nn_distance_quantiles"])

    to_original = run.standardizer.inverse_transform  # the statistics the run was trained and samples with
    generated_raw, real_raw = to_original(generated), to_original(real_draw)
    value, ci = bootstrap_ci(mean_pairwise_cosine_distance, generated_raw, n_resamples=n_boot, seed=seed,
                             correct_bias=True)  # copies in a resample lower the diversity
    out["diversity"] = _entry(value, ci, mean_pairwise_cosine_distance(real_raw), space="original")

    noise = sample_noise(n, dim, seed, device)[:STRAIGHTNESS_ROWS]
    trajectory = integrate(velocity, noise, solver=solver, steps=steps, return_trajectory=True).trajectory
    out["straightness"] = _entry(*_mean_ci(straightness_per_row(trajectory), n_boot, seed))

    out["stats"] = {"generated_vs_test": norm_and_cosine_stats(generated_raw, to_original(test)),
                    "train_vs_test": norm_and_cosine_stats(real_raw, to_original(test))}
    out["nfe_curve"] = nfe_curve(velocity, dim, test, n, nfe_solvers, nfe_steps, seed, device) if nfe_solvers else []
    out["settings"] = {"n_generated": n, "n_test": len(test), "n_train": len(train), "solver": solver, "steps": steps,
                       "nfe": batch.nfe, "bootstrap": n_boot, "seed": seed, "k": k, "seconds": time.perf_counter() - began}
    return out, generated
