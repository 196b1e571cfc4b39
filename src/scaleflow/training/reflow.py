"""Reflow: sample (noise, endpoint) pairs with a trained run's ODE, then train on those fixed pairs.

The noise comes from the "reflow" stream (`sampling.sample.NOISE_STREAMS`), never the one `sample` and
`eval` draw from, so no evaluation starts from noise the network was trained on, whatever the seeds.
Held-out pairs, drawn the same way, validate the run: the loss reflow optimizes, on pairs it never saw.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable, Optional

from scaleflow.data.prepare import MIN_HELD_OUT_ROWS, MIN_TRAIN_ROWS
from scaleflow.sampling.sample import generate
from scaleflow.training.config import ConfigError, make_config
from scaleflow.files import write_safetensors
from scaleflow.training.lock import check_not_busy, run_lock
from scaleflow.training.run import REFLOW_PAIRS, load_run, resolve_device, train

PAIR_STREAM = "reflow"


def _holds_a_run(out: Path) -> ConfigError:
    return ConfigError(f"{out}: already holds a run; continue it with: scaleflow train --resume --out "
                       f"{shlex.quote(str(out))}, or choose another --out")


def reflow(source: str | Path, out: str | Path, n_pairs: Optional[int] = None, solver: str = "dopri5",
           solver_steps: int = 50, seed: int = 0, progress: bool = True, n_val_pairs: Optional[int] = None,
           on_start: Optional[Callable[[], None]] = None, **overrides) -> dict:
    """Train a rectified flow from `source` into `out`; returns the new run's summary.

    The pairs are `n_pairs + n_val_pairs` noise draws of the reflow stream with seed `seed`, and where the
    source's EMA network carries them at t=1 (normalized space); the first `n_pairs` (default: as many as
    the source's training rows) are trained on, the other `n_val_pairs` (default: as many as its validation
    rows) validate. All are written to `out/reflow_pairs.safetensors` (x0, x1, val_x0, val_x1), with the
    stream, seed and solver in its metadata. The new network starts from the source's EMA weights;
    `overrides` change other options (e.g. steps).
    """
    if not str(out).strip():
        raise ConfigError("out (--out): give a folder path, not an empty string")
    source, out = Path(source), Path(out)
    for count, option, least, what in ((n_pairs, "n_pairs (--n-pairs)", MIN_TRAIN_ROWS, "training"),
                                       (n_val_pairs, "n_val_pairs (--n-val-pairs)", MIN_HELD_OUT_ROWS, "validation")):
        if count is not None and count < least:
            raise ConfigError(f"{option} must be >= {least} (the smallest {what} set a run takes), got {count}")
    check_not_busy(out)
    if (out / "config.yaml").exists():
        raise _holds_a_run(out)
    run_device = overrides.pop("device", "auto")
    device = resolve_device(run_device)
    run = load_run(source, device=device)
    # Validate the new run's options before writing anything into `out`.
    config = make_config({
        **run.config.model_dump(), "flow": "reflow", "reflow_source": str(source), "init_from": str(source),
        "select_by": "val_loss",
        "out": str(out), "device": run_device, **overrides,
    })
    n = n_pairs if n_pairs is not None else run.summary.get("train_rows") or len(run.splits.train)
    n_val = n_val_pairs if n_val_pairs is not None else max(len(run.splits.val), MIN_HELD_OUT_ROWS)
    pairs = generate(run.velocity, n + n_val, run.info["input_dim"], solver, solver_steps, seed, device,
                     stream=PAIR_STREAM)
    how = {"stream": PAIR_STREAM, "seed": str(seed), "n_pairs": str(n), "n_val_pairs": str(n_val),
           "solver": solver, "solver_steps": str(solver_steps), "source": str(source)}
    with run_lock(out):  # held on through training: no other process writes `out` in between
        if (out / "config.yaml").exists():
            raise _holds_a_run(out)
        write_safetensors(out / REFLOW_PAIRS, {"x0": pairs.x0[:n], "x1": pairs.x[:n],
                                               "val_x0": pairs.x0[n:], "val_x1": pairs.x[n:]}, metadata=how)
        return train(config, out, progress=progress, on_start=on_start)
