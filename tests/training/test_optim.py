"""Optimizers: the Muon/AdamW split puts every parameter in exactly one group for every network, each
optimizer trains, and a Muon run resumes bit for bit."""
from __future__ import annotations

import pytest
import torch

from scaleflow.nets import create_model
from scaleflow.training.config import ConfigError, make_config
from scaleflow.training.optim import OPTIMIZERS, MuonWithAdamW, make_optimizer, muon_split
from scaleflow.training.run import train

from crash_helpers import crash_resume_and_compare

ARCHS = ("mlp", "dit", "unet", "mamba")


@pytest.mark.parametrize("arch", ARCHS)
def test_muon_split_covers_every_parameter_once(arch):
    model = create_model(arch, "tiny", input_dim=64)
    muon, adamw = muon_split(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(muon + adamw) == sorted(names) and not set(muon) & set(adamw)
    params = dict(model.named_parameters())
    assert muon and all(params[n].dim() == 2 for n in muon)
    # Never to Muon: biases, time and position embeddings, SSM parameters, data projections in and out.
    for name in muon:
        assert not name.endswith("bias")
        assert not any(part in name for part in ("time_embed", "t_embedder", "pos_embed", "A_log", "dt_proj", "x_proj"))
    data_layers = {"mlp": ["input_layer.weight_x", "net.5.weight"], "dit": ["input_proj.weight", "final_layer.linear.weight"],
                   "unet": ["encoder.0.linear1.weight", "output.weight"],
                   "mamba": ["patch_embed.weight", "final_layer.linear.weight", "blocks.0.mixer.forward_ssm.A_log"]}[arch]
    assert set(data_layers) <= set(adamw)


def test_muon_optimizer_steps_both_halves_and_follows_the_schedule():
    model = create_model("dit", "tiny", input_dim=16)
    with torch.no_grad():  # AdaLN-Zero starts with zero gradients for most weights; give every one a gradient
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    opt = make_optimizer(model, "muon", lr=1e-2, weight_decay=0.0)
    assert isinstance(opt, MuonWithAdamW) and isinstance(opt.inner[0], torch.optim.Muon)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(8, 16), torch.rand(8)).square().mean().backward()
    opt.step()
    schedule.step()
    muon, adamw = muon_split(model)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert set(muon) <= moved and "input_proj.weight" in moved
    assert all(g["lr"] == pytest.approx(5e-3) for o in opt.inner for g in o.param_groups)


def test_unknown_optimizer_is_refused():
    with pytest.raises(ConfigError, match="optimizer"):
        make_config({"optimizer": "lion"})



OPTIONS = dict(arch="dit", scale="tiny", model={"hidden_dim": 32, "num_heads": 2}, steps=30, batch_size=32,
               val_every=10, checkpoint_every=10, n_val=40, n_test=40, warmup_steps=5, device="cpu")


@pytest.mark.parametrize("optimizer, lr", [("adamw", 1e-2), ("sgd", 5e-2), ("muon", 1e-2)])
def test_each_optimizer_trains(optimizer, lr, data, tmp_path):
    summary = train(make_config({**OPTIONS, "data": data, "optimizer": optimizer, "lr": lr}), tmp_path / "run",
                    progress=False)
    assert summary["best_val_loss"] < summary["baseline_val_loss"]


def test_a_muon_run_resumes_bit_for_bit(data, tmp_path):
    crash_resume_and_compare(make_config({**OPTIONS, "data": data, "optimizer": "muon"}), tmp_path, crash_step=15)


def test_optimizers_listed():
    assert OPTIMIZERS == ("adamw", "sgd", "muon")
