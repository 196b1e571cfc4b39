"""`scaleflow sample RUN`: generate embeddings from a trained run, in the original embedding space."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import typer
from rich.console import Console

from scaleflow.cli.errors import user_errors
from scaleflow.data.embed import check_decodable, decode_embeddings
from scaleflow.files import SAVE_SUFFIXES, save_embeddings
from scaleflow.files import check_writable_file
from scaleflow.sampling.sphere import project_to_sphere, sphere_radius
from scaleflow.sampling.sample import generate
from scaleflow.sampling.solvers import SOLVERS
from scaleflow.search.guidance import FunctionGuide, GuidanceConfig, GuidedVelocity
from scaleflow.search.objectives import load_objective
from scaleflow.training.config import ConfigError
from scaleflow.training.run import load_run, resolve_device


def nearest_texts(samples: torch.Tensor, reference: torch.Tensor, texts: list[str], k: int) -> list[list[tuple[float, str]]]:
    """For each sample `[S, D]`, the k most cosine-similar reference rows `[N, D]` as (cosine, text)."""
    a = torch.nn.functional.normalize(samples, dim=1)
    b = torch.nn.functional.normalize(reference, dim=1)
    sims, index = (a @ b.T).topk(min(k, len(b)), dim=1)
    return [[(float(s), texts[int(i)]) for s, i in zip(row_s, row_i)] for row_s, row_i in zip(sims, index)]


@user_errors
def sample(
    run: Path = typer.Argument(..., help="run folder written by `scaleflow train`"),
    n: int = typer.Option(1000, "--n", help="number of samples"),
    solver: str = typer.Option("heun", help=f"ODE solver: {' | '.join(SOLVERS)}"),
    steps: int = typer.Option(20, help="solver steps (fixed-step solvers)"),
    rtol: float = typer.Option(1e-5, help="dopri5 relative tolerance"),
    atol: float = typer.Option(1e-5, help="dopri5 absolute tolerance"),
    seed: int = typer.Option(0, help="noise seed"),
    weights: str = typer.Option("ema", help="ema | model (raw weights)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    batch_size: int = typer.Option(4096, help="samples integrated at once"),
    out: Optional[Path] = typer.Option(None, "--out", help=f"write samples here ({', '.join(SAVE_SUFFIXES)})"),
    neighbors: int = typer.Option(0, "--neighbors", help="print the K nearest training texts of a few samples"),
    show: int = typer.Option(5, help="how many samples --neighbors / --decode print"),
    decode: bool = typer.Option(False, "--decode", help="decode samples to text with SONAR (extra [sonar])"),
    noise_scale: float = typer.Option(1.0, "--noise-scale", help="temperature of the starting noise (< 1: more "
                                      "precise, less diverse samples)"),
    guide: Optional[str] = typer.Option(None, "--guide", help="steer samples up the gradient of a differentiable "
                                        "score MODULE:FUNCTION or file.py:FUNCTION, f(x: [N, D]) -> [N] (original space)"),
    guide_strength: float = typer.Option(GuidanceConfig.strength, "--guide-strength", help="guidance strength lambda"),
    guide_clip: Optional[float] = typer.Option(GuidanceConfig.clip, "--guide-clip", help="clip the gradient's norm"),
    guide_cap: float = typer.Option(GuidanceConfig.cap, "--guide-cap", help="cap the guidance term at this share of "
                                    "|v| (0: no cap)"),
    guide_start: float = typer.Option(GuidanceConfig.start, "--guide-start", help="share of steps, from the start, "
                                      "without guidance"),
    guide_stop: float = typer.Option(GuidanceConfig.stop, "--guide-stop", help="share of steps, at the end, without "
                                     "guidance"),
    project_sphere: bool = typer.Option(False, "--project-sphere", help="put the samples on the training rows' "
                                        "sphere (rows of one norm: a normalized encoder's)"),
) -> None:
    """Generate embeddings from a trained run (EMA weights), un-normalized to the original space."""
    if n < 1 or batch_size < 1:
        raise ConfigError(f"--n and --batch-size must be >= 1; got {n} and {batch_size}")
    if not 0 < noise_scale < float("inf"):
        raise ConfigError(f"--noise-scale must be > 0 and finite; got {noise_scale}")
    if neighbors < 0 or show < 1:
        raise ConfigError(f"--neighbors must be >= 0 and --show >= 1; got {neighbors} and {show}")
    if out is not None and out.suffix.lower() not in SAVE_SUFFIXES:
        raise ConfigError(f"--out {out}: use one of {', '.join(SAVE_SUFFIXES)}")
    if out is not None:
        check_writable_file(out, "--out")
    guidance = None
    if guide is not None:
        if solver == "dopri5":
            raise ConfigError("--guide needs a fixed-step --solver (euler, midpoint, heun, rk4): guidance counts steps")
        guidance = GuidanceConfig(strength=guide_strength, clip=guide_clip, cap=guide_cap or None, start=guide_start,
                                  stop=guide_stop)  # ValueError names the knob
        guide_fn = load_objective(guide, "--guide")
    target = resolve_device(device)
    loaded = load_run(run, weights=weights, device=target)
    dim = loaded.info["input_dim"]
    if decode:
        check_decodable(dim)  # before sampling and writing anything
    if neighbors > 0:
        data = loaded.data()
        texts = data.texts_of("train")
        if texts is None:
            raise ConfigError(f"--neighbors: the run's data ({data.source}) has no texts; train with --texts")
    velocity = loaded.velocity
    if guidance is not None:
        velocity = GuidedVelocity(velocity, FunctionGuide(guide_fn, f"--guide {guide}"), guidance,
                                  to_original=loaded.standardizer.inverse_transform)
    batch = generate(velocity, n, dim, solver, steps, seed, target, batch_size, rtol=rtol, atol=atol,
                     noise_scale=noise_scale)
    samples = loaded.standardizer.inverse_transform(batch.x).cpu()
    if project_sphere:
        radius = sphere_radius(loaded.standardizer.inverse_transform(loaded.data().train))
        if radius is None:
            raise ConfigError(f"--project-sphere: {run}'s training rows do not share one norm (not a normalized "
                              "encoder's)")
        samples = project_to_sphere(samples, radius)
    console = Console(stderr=True)
    console.print(f"{n} samples from {run} with {solver} ({batch.nfe} NFE) in {batch.seconds:.2f}s "
                  f"({n / max(batch.seconds, 1e-9):.0f} samples/s)")
    if out is not None:
        save_embeddings(out, samples.numpy())
        console.print(f"wrote {out}")
    if neighbors > 0:
        train_rows = data.standardizer.inverse_transform(data.train)
        for i, row in enumerate(nearest_texts(samples[:show], train_rows, texts, neighbors)):
            console.print(f"[bold]sample {i}[/]")
            for cosine, text in row:
                console.print(f"  {cosine:.3f}  {text}", highlight=False, markup=False)
    if decode:
        for i, text in enumerate(decode_embeddings(samples[:show].numpy())):
            console.print(f"sample {i}: {text}", highlight=False, markup=False)
