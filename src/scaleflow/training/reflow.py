"""Reflow: sample (noise, endpoint) pairs with a trained run's ODE, then train on those fixed pairs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from scaleflow.sampling.sample import generate
from scaleflow.training.config import ConfigError, make_config
from scaleflow.files import write_safetensors
from scaleflow.training.run import REFLOW_PAIRS, load_run, resolve_device, train


def reflow(source: str | Path, out: str | Path, n_pairs: Optional[int] = None, solver: str = "dopri5",
           solver_steps: int = 50, seed: int = 0, progress: bool = True, **overrides) -> dict:
    """Train a rectified flow from `source` into `out`; returns the new run's summary.

    The pairs are `n_pairs` noise draws (default: as many as the source's training rows) and where
    the source's EMA network carries them at t=1 (normalized space), written to `out/reflow_pairs.safetensors`.
    The new network starts from the source's EMA weights; `overrides` change other options (e.g. steps).
    """
    if not str(out).strip():
        raise ConfigError("out (--out): give a folder path, not an empty string")
    source, out = Path(source), Path(out)
    if n_pairs is not None and n_pairs < 1:
        raise ConfigError(f"n_pairs (--n-pairs) must be >= 1, got {n_pairs}")
    if (out / "config.yaml").exists():
        raise ConfigError(f"{out}: already holds a run; choose another --out")
    run_device = overrides.pop("device", "auto")
    device = resolve_device(run_device)
    run = load_run(source, device=device)
    # Validate the new run's options before writing anything into `out`.
    config = make_config({
        **run.config.model_dump(), "flow": "reflow", "reflow_source": str(source), "init_from": str(source),
        "out": str(out), "device": run_device, **overrides,
    })
    n = n_pairs if n_pairs is not None else run.summary.get("train_rows") or len(run.splits.train)
    pairs = generate(run.velocity, n, run.info["input_dim"], solver, solver_steps, seed, device)
    write_safetensors(out / REFLOW_PAIRS, {"x0": pairs.x0, "x1": pairs.x})
    return train(config, out, progress=progress)
