"""Augmentation as a training option: canonical in the config, applied to data rows only (the noise
is the same draw with or without it), off at validation, resumable bit for bit."""
from __future__ import annotations

import json

import pytest
import torch

from scaleflow.training.config import ConfigError, make_config
from scaleflow.training.trainer import Trainer

from crash_helpers import crash_resume_and_compare

OPTIONS = dict(arch="mlp", scale="tiny", model={"hidden_dim": 32}, steps=30, batch_size=32, val_every=10,
               checkpoint_every=10, n_val=40, n_test=40, warmup_steps=5, lr=1e-2, device="cpu")



def test_config_keeps_a_canonical_spec_and_refuses_bad_ones():
    assert make_config({"aug": "noise, mixup"}).aug == "mixup=0.2,noise=0.1"
    assert make_config({}).aug == "" and make_config({"aug": "none"}).aug == ""
    with pytest.raises(ConfigError, match="--aug"):
        make_config({"aug": "mixup=0"})
    with pytest.raises(ConfigError, match="aug"):
        make_config({"flow": "reflow", "reflow_source": "runs/x", "aug": "noise"})


def _first_step_pairs(aug: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, x1) the flow receives at step 0 of a trainer with `aug`."""
    from scaleflow.flows import ICFM
    from scaleflow.nets import create_model

    seen = {}

    class Recording(ICFM):
        def sample_path(self, x0, x1, t=None, generator=None):
            seen.setdefault("pair", (x0.clone(), x1.clone()))
            return super().sample_path(x0, x1, t, generator)

    config = make_config({**OPTIONS, "aug": aug})
    rows = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    trainer = Trainer(config, create_model("mlp", "tiny", input_dim=8, hidden_dim=32), Recording(), rows, rows[:40],
                      run_dir="unused", progress=False)
    seen.clear()
    trainer.train_step(0)
    return seen["pair"]


def test_only_data_rows_are_augmented():
    x0_plain, x1_plain = _first_step_pairs("")
    x0_aug, x1_aug = _first_step_pairs("mixup,noise,dropout")
    assert torch.equal(x0_plain, x0_aug)  # the noise: the same draw, untouched
    assert not torch.allclose(x1_plain, x1_aug)
    assert (x1_aug == 0).float().mean() > 0.05  # dropout zeroed about 10% of entries


def test_an_augmented_run_trains_and_resumes_bit_for_bit(data, tmp_path):
    config = make_config({**OPTIONS, "data": data, "aug": "mixup,noise,dropout"})
    crash_resume_and_compare(config, tmp_path, crash_step=15)
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["best_val_loss"] < summary["baseline_val_loss"]
