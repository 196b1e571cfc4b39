"""`select_by: samples`: the best weights are those whose samples rank best against the validation rows (the
memorization-aware worst ratio), not those of the lowest validation loss; resuming stays exact."""
from __future__ import annotations

import json

from scaleflow.training.config import make_config
from scaleflow.training.run import train

from crash_helpers import crash_resume_and_compare

OPTIONS = dict(arch="mlp", scale="tiny", model={"hidden_dim": 32}, steps=40, batch_size=32, val_every=10,
               checkpoint_every=20, log_every=5, n_val=40, n_test=40, warmup_steps=5, lr=1e-2, device="cpu",
               select_by="samples")


def test_best_weights_are_chosen_by_the_samples(data, tmp_path):
    summary = train(make_config({**OPTIONS, "data": data}), tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "val_worst_ratio" in r]
    assert [r["step"] for r in validations] == [10, 20, 30, 40]
    assert all(0 <= r["val_worst_ratio"] <= 2 and r["val_binding"] for r in validations)
    best = max(validations, key=lambda r: r["val_worst_ratio"])  # the first of equal scores
    assert summary["selected_by"] == "samples" and summary["best_step"] == best["step"]
    assert summary["best_val_worst_ratio"] == best["val_worst_ratio"]
    assert summary["best_val_loss"] == best["val_loss"]  # the loss at the chosen step, not the lowest


def test_val_loss_selection_is_the_default(data, tmp_path):
    summary = train(make_config({**OPTIONS, "data": data, "select_by": "val_loss", "steps": 20}), tmp_path / "run",
                    progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert not any("val_worst_ratio" in r for r in records)
    assert summary["selected_by"] == "val_loss" and "best_val_worst_ratio" not in summary
    assert make_config({}).select_by == "val_loss"


def test_selection_by_samples_resumes_bit_for_bit(data, tmp_path):
    crash_resume_and_compare(make_config({**OPTIONS, "data": data}), tmp_path, 27)


def test_scoring_samples_leaves_the_training_generator_alone(data, tmp_path):
    """Resuming stays exact only if validation draws nothing from the generator training uses."""
    import torch

    from scaleflow.flows.registry import create_flow
    from scaleflow.nets import create_model
    from scaleflow.training.trainer import Trainer

    config = make_config({**OPTIONS, "data": data})
    rows = torch.randn(120, 8)
    trainer = Trainer(config, create_model("mlp", "tiny", input_dim=8, hidden_dim=32), create_flow("icfm"),
                      rows[:80], rows[80:], tmp_path, progress=False)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    score, binding = trainer.sample_score(trainer.model)
    assert torch.equal(torch.get_rng_state(), before) and binding is not None
