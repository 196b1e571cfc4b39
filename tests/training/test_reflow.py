"""Reflow: pairs from their own noise stream, validated on held-out pairs drawn the same way."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from scaleflow.flows.draws import make_validation_set, validation_coupling_batch
from scaleflow.sampling.sample import generate, sample_noise
from scaleflow.training.config import make_config
from scaleflow.training.reflow import reflow
from scaleflow.training.run import build_flow, load_run, train

N_PAIRS, N_VAL_PAIRS, STEPS = 96, 40, 60


@pytest.fixture(scope="module")
def reflowed(tmp_path_factory) -> tuple[Path, Path]:
    """(source run, its reflow run), both tiny."""
    import numpy as np

    root = tmp_path_factory.mktemp("reflow")
    rng = np.random.default_rng(0)
    np.save(root / "data.npy", (rng.standard_normal((300, 3)) @ rng.standard_normal((3, 8)) + 5).astype(np.float32))
    config = make_config(dict(data=str(root / "data.npy"), arch="mlp", scale="tiny", model={"hidden_dim": 32},
                              steps=60, batch_size=32, val_every=10, log_every=10, n_val=50, n_test=50,
                              warmup_steps=5, lr=1e-2, device="cpu"))
    train(config, root / "source", progress=False)
    reflow(root / "source", root / "reflowed", n_pairs=N_PAIRS, n_val_pairs=N_VAL_PAIRS, solver="euler",
           solver_steps=8, seed=3, progress=False, steps=STEPS, device="cpu")
    return root / "source", root / "reflowed"


def test_pairs_come_from_the_reflow_stream_never_the_sampling_one(reflowed):
    source, out = reflowed
    pairs = load_file(str(out / "reflow_pairs.safetensors"))
    assert {k: tuple(v.shape) for k, v in pairs.items()} == {
        "x0": (N_PAIRS, 8), "x1": (N_PAIRS, 8), "val_x0": (N_VAL_PAIRS, 8), "val_x1": (N_VAL_PAIRS, 8)}
    drawn = sample_noise(N_PAIRS + N_VAL_PAIRS, 8, seed=3, stream="reflow")
    assert torch.equal(pairs["x0"], drawn[:N_PAIRS]) and torch.equal(pairs["val_x0"], drawn[N_PAIRS:])
    with safe_open(str(out / "reflow_pairs.safetensors"), "pt") as f:
        how = f.metadata()
    assert how == {"stream": "reflow", "seed": "3", "n_pairs": str(N_PAIRS), "n_val_pairs": str(N_VAL_PAIRS),
                   "solver": "euler", "solver_steps": "8", "source": str(source)}
    assert json.loads((out / "model.json").read_text())["reflow_pairs"] == how


def test_pairs_share_no_noise_with_what_sample_and_eval_draw(reflowed):
    source, out = reflowed
    pairs = load_file(str(out / "reflow_pairs.safetensors"))
    run = load_run(source)
    for seed in (3, 0):  # the pairs' seed, and sample/eval's default
        eval_noise = generate(run.velocity, N_PAIRS + N_VAL_PAIRS, 8, "euler", 1, seed=seed).x0
        assert torch.cdist(eval_noise, torch.cat([pairs["x0"], pairs["val_x0"]])).min() > 1e-3


def test_validation_is_on_the_held_out_pairs_and_improves(reflowed):
    _, out = reflowed
    pairs, run = load_file(str(out / "reflow_pairs.safetensors")), load_run(out)
    expected = make_validation_set(build_flow(run.config), pairs["val_x1"], run.config.prediction, run.config.seed,
                                   validation_coupling_batch(run.config.batch_size, N_PAIRS), x0=pairs["val_x0"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_on"] == "reflow pairs" and summary["train_rows"] == N_PAIRS
    assert summary["baseline_val_loss"] == pytest.approx(expected.baseline_loss, rel=1e-6)
    # The best validation loss, recomputed from the stored held-out pairs with the saved (best) EMA weights:
    with torch.no_grad():
        loss = float((run.model(expected.x_t, expected.t) - expected.target).square().mean())
    assert loss == pytest.approx(summary["best_val_loss"], rel=1e-5)
    # On pairs drawn like its training pairs, the loss reflow optimizes goes down: "best" is not the first.
    losses = [r["val_loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "val_loss" in r]
    assert len(losses) == STEPS // 10 and losses[1] < 0.5 * losses[0] and min(losses) < 0.2 * losses[0], losses
    assert summary["best_step"] >= STEPS // 2 and summary["best_val_loss"] == min(losses)


def test_a_reflow_run_stopped_before_its_first_checkpoint_restarts_from_its_source(reflowed, tmp_path):
    _, done = reflowed
    out = tmp_path / "again"
    out.mkdir()
    shutil.copy(done / "reflow_pairs.safetensors", out)
    config = make_config(yaml_path=done / "config.yaml").model_copy(update={"out": str(out)})

    class Crash(Exception):
        pass

    def crash(step):
        if step == 4:
            raise Crash

    with pytest.raises(Crash):
        train(config, out, progress=False, on_step=crash)
    assert not (out / "checkpoints").exists()
    train(config, out, resume=True, progress=False)  # starts again from the source's weights (init_from)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(out / name)), load_file(str(done / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
