import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from scaleflow.flows import create_flow
from scaleflow.nets import create_model
from scaleflow.sampling import generate
from scaleflow.training.config import ConfigError, make_config
from scaleflow.training.run import load_run, train
from scaleflow.training.trainer import Trainer, TrainingDiverged


def _config(data, **overrides):
    base = dict(data=data, arch="mlp", scale="tiny", model={"hidden_dim": 32}, steps=40, batch_size=32,
                val_every=10, checkpoint_every=10, log_every=5, n_val=40, n_test=40, warmup_steps=5, lr=1e-2,
                recipe="none")  # the trainer's own mechanics, not the data-size recipe (tests/training/test_recipes.py)
    return make_config({**base, **overrides})


def test_run_folder_and_summary(small_data, tmp_path):
    summary = train(_config(small_data), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.yaml", "model.json", "splits.json", "normalization.safetensors", "model.safetensors",
                 "ema.safetensors", "checkpoints/last.pt", "metrics.jsonl", "summary.json"):
        assert (run / name).exists(), name
    assert json.loads((run / "summary.json").read_text()) == summary
    for key in ("best_val_loss", "baseline_val_loss", "steps", "params", "wall_seconds"):
        assert key in summary
    assert summary["steps"] == 40 and summary["params"] == json.loads((run / "model.json").read_text())["params"]
    assert summary["best_val_loss"] < summary["baseline_val_loss"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [10, 20, 30, 40]
    assert not list(run.rglob("*.tmp"))  # every file was renamed into place


def test_load_run_rebuilds_the_ema_network(small_data, tmp_path):
    train(_config(small_data), tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    ema = load_file(str(tmp_path / "run" / "ema.safetensors"))
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, ema[name])
    data = run.data()
    assert data.test.shape == (40, 8)
    x = torch.randn(3, 8)
    assert run.velocity(x, torch.rand(3)).shape == (3, 8)


def test_overfits_a_tiny_dataset(tmp_path):
    # Fixed (noise, data) pairs, as reflow trains on: (x_t, t) then determines the pair, so the
    # velocity target is a function the network can fit exactly.
    g = torch.Generator().manual_seed(0)
    x1, x0 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    config = make_config(dict(arch="mlp", scale="tiny", prediction="velocity", model={"hidden_dim": 64}, steps=800, batch_size=4,
                              lr=3e-3, weight_decay=0.0, warmup_steps=20, val_every=800, log_every=800))
    torch.manual_seed(0)
    model = create_model("mlp", "tiny", input_dim=8, hidden_dim=64)
    trainer = Trainer(config, model, create_flow("reflow"), x1, x1, tmp_path, pairs_x0=x0, progress=False)
    first, _ = trainer.train_step(0)
    trainer.state.step = 1
    trainer.fit()
    t = torch.rand(4, generator=g)
    residual = (model(trainer.flow.compute_xt(x0, x1, t), t) - (x1 - x0)).square().mean()
    assert residual < 1e-3 * first  # memorized: near-zero loss on the training pairs


def test_resume_after_crash_equals_uninterrupted(small_data, tmp_path):
    config = _config(small_data)
    train(config, tmp_path / "straight", progress=False)

    class Crash(Exception):
        pass

    def crash_at_25(step):
        if step == 25:
            raise Crash

    with pytest.raises(Crash):
        train(config, tmp_path / "resumed", progress=False, on_step=crash_at_25)
    assert torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=True)["state"]["step"] == 20
    train(config, tmp_path / "resumed", resume=True, progress=False)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(tmp_path / "straight" / name)), load_file(str(tmp_path / "resumed" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    a = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["state"]["best_val_loss"] == b["state"]["best_val_loss"]


def test_refuses_to_overwrite_or_resume_nothing(small_data, tmp_path):
    config = _config(small_data, steps=10)
    train(config, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="already holds a run; use --resume"):
        train(config, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="nothing to resume"):
        train(config, tmp_path / "empty", resume=True, progress=False)


def test_early_stopping_fires_after_patience(small_data, tmp_path, monkeypatch):
    losses = iter([1.0, 1.0, 0.9, 0.9, 0.95, 0.95, 0.97, 0.97, 0.99, 0.99, 0.5, 0.5])
    monkeypatch.setattr(Trainer, "validate", lambda self, model: next(losses))
    summary = train(_config(small_data, steps=100, patience=2), tmp_path / "run", progress=False)
    assert summary["steps"] == 40 and summary["stopped_early"]  # best at step 20, no gain at 30 and 40
    assert summary["best_step"] == 20 and summary["best_val_loss"] == 0.9


def test_early_stopping_waits_for_min_steps(small_data, tmp_path, monkeypatch):
    """A plateau at the start (a Gaussian-residual run's first validations) does not stop a run before min_steps."""
    losses = iter([1.0, 1.0] + [1.0, 1.0] * 4 + [0.5, 0.5] + [0.6, 0.6] * 10)
    monkeypatch.setattr(Trainer, "validate", lambda self, model: next(losses))
    summary = train(_config(small_data, steps=100, patience=2, min_steps=60), tmp_path / "run", progress=False)
    assert summary["best_step"] == 60 and summary["best_val_loss"] == 0.5  # found after the plateau
    assert summary["steps"] == 80 and summary["stopped_early"]  # then patience counts as before
    # Validations without improvement before min_steps do not count: a run that never improves stops patience
    # validations after it.
    flat = iter([1.0, 1.0] + [1.0, 1.0] * 9)
    monkeypatch.setattr(Trainer, "validate", lambda self, model: next(flat))
    summary = train(_config(small_data, steps=100, patience=2, min_steps=40), tmp_path / "flat", progress=False)
    assert summary["best_step"] == 10 and summary["steps"] == 60


def test_nan_loss_stops_with_a_clear_message(small_data, tmp_path, monkeypatch):
    original = Trainer.loss

    def poisoned(self, x_t, t, target, model):
        loss = original(self, x_t, t, target, model)
        return loss * float("nan") if model.training and self.state.step >= 15 else loss

    monkeypatch.setattr(Trainer, "loss", poisoned)
    with pytest.raises(TrainingDiverged) as info:
        train(_config(small_data), tmp_path / "run", progress=False)
    message = str(info.value)
    assert "loss became nan at step 15" in message and "last.pt" in message
    kept = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert kept["state"]["step"] == 10
    assert all(torch.isfinite(v).all() for v in kept["model"].values())


def test_wandb_without_the_extra_is_refused_before_anything_is_written(small_data, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ValueError, match=r"pip install 'scaleflow\[wandb\]'"):
        train(_config(small_data, wandb=True), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_wandb_receives_every_record(small_data, tmp_path, monkeypatch):
    import sys
    import types

    logged, inits = [], []
    fake = types.ModuleType("wandb")

    class FakeRun:
        def log(self, data, step):
            logged.append((step, data))

        def finish(self):
            logged.append("finished")

    fake.init = lambda **kwargs: inits.append(kwargs) or FakeRun()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    train(_config(small_data, wandb=True, steps=20), tmp_path / "run", progress=False)
    assert inits[0]["mode"] == "offline" and inits[0]["project"] == "scaleflow"
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(logged) == len(lines) + 1 and logged[-1] == "finished"
    assert any("val_loss" in data for step, data in logged[:-1])


def test_a_mistyped_device_is_a_config_error():
    from scaleflow.training.run import resolve_device

    with pytest.raises(ValueError, match="'gpu' is not a device; use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")


def test_run_data_refuses_a_changed_file(small_data, tmp_path):
    import numpy as np

    train(_config(small_data, steps=10), tmp_path / "run", progress=False)
    x = np.load(small_data)
    np.save(small_data, x * 2 + 1)  # same shape, different rows
    with pytest.raises(ValueError, match="the file changed"):
        load_run(tmp_path / "run").data()


@pytest.mark.parametrize("grad_clip, clips", [(1e-4, True), (1e6, False), (0.0, False)])
def test_gradient_clipping_matches_clip_grad_norm(grad_clip, clips):
    # The trainer scales gradients only when their norm exceeds the limit, by clip_grad_norm_'s rule.
    config = make_config(dict(arch="mlp", scale="tiny", model={"hidden_dim": 16}, steps=10, batch_size=16,
                              grad_clip=grad_clip))
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    trainer = Trainer(config, create_model("mlp", "tiny", input_dim=8, hidden_dim=16), create_flow("icfm"), x, x,
                      "/nonexistent", progress=False, logger=object())
    raw, seen = {}, {}
    for p in trainer.params:
        p.register_post_accumulate_grad_hook(lambda p: raw.__setitem__(p, p.grad.clone()))
    trainer.optimizer.register_step_pre_hook(lambda *_: seen.update({p: p.grad.clone() for p in trainer.params}))
    _, grad_norm = trainer.train_step(0)
    raw_norm = float(torch.nn.utils.get_total_norm(list(raw.values())))
    assert grad_norm == pytest.approx(raw_norm)  # the logged norm is the one before clipping
    if clips:
        assert raw_norm > grad_clip
        assert float(torch.nn.utils.get_total_norm(list(seen.values()))) == pytest.approx(grad_clip, rel=1e-4)
        for p in trainer.params:
            torch.testing.assert_close(seen[p], raw[p] * (grad_clip / (raw_norm + 1e-6)))
    else:
        assert all(torch.equal(seen[p], raw[p]) for p in trainer.params)



def test_load_run_refuses_weights_that_do_not_fit_its_network(small_data, tmp_path):
    train(_config(small_data, steps=10), tmp_path / "run", progress=False)
    save_file({"other.weight": torch.zeros(2, 2)}, str(tmp_path / "run" / "ema.safetensors"))
    with pytest.raises(ConfigError, match="ema.safetensors: does not fit the network model.json describes"):
        load_run(tmp_path / "run")


def test_a_run_trained_on_a_relative_path_is_usable_from_any_folder(small_data, tmp_path, monkeypatch):
    data = Path(small_data)
    monkeypatch.chdir(data.parent)
    train(_config(data.name, steps=10), tmp_path / "run", progress=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = load_run(tmp_path / "run")
    assert run.config.data == str(data.resolve())
    assert run.data().test.shape == (40, 8)


def test_a_dimension_constant_over_training_rows_keeps_losses_finite(tmp_path):
    # Divided by its ~0 training spread, a held-out deviation of 1 in that dimension was a loss of ~1e16.
    import numpy as np

    from scaleflow.data.splits import make_splits

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((200, 3)) @ rng.standard_normal((3, 8))).astype(np.float32)
    x[:, 5] = 2.0
    x[make_splits(200, 40, 40, seed=0).val, 5] = 3.0
    np.save(tmp_path / "constant.npy", x)
    summary = train(_config(str(tmp_path / "constant.npy"), steps=20), tmp_path / "run", progress=False)
    assert summary["baseline_val_loss"] < 2 and summary["best_val_loss"] < summary["baseline_val_loss"]
    assert load_file(str(tmp_path / "run" / "normalization.safetensors"))["std"][5] == 0.0  # saved: constant
    run = load_run(tmp_path / "run")  # read back: the dimension is still known as constant ...
    assert run.standardizer.unscaled.tolist() == [5]
    samples = run.standardizer.inverse_transform(generate(run.velocity, 50, 8, "euler", 4).x)
    assert torch.equal(samples[:, 5], torch.full((50,), 2.0))  # ... and samples hold its constant
