"""The `vit` sweep task: options validated in one place, the note's rules resolved and recorded, a
trial's record, a vit sweep summarized (figures, the four questions answered: tests/sweeps/test_scale_study.py)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from scaleflow.sweeps.design import expand
from scaleflow.sweeps.local import run_sweep
from scaleflow.sweeps.report import summarize_sweep
from scaleflow.sweeps.spec import SweepSpec
from scaleflow.sweeps.tasks import TASKS, check_trial, known_options
from scaleflow.sweeps.vit_task import VitTrialOptions, resolve_settings, run_vit_trial
from scaleflow.training.config import ConfigError

FAST = {"scale": "tiny", "epochs": 1, "batch_size": 256, "lr_reference_batch": 256, "analysis_rows": 64}


def test_options_are_checked_in_one_place():
    assert "optimizer" in known_options("vit") and "flow" not in known_options("vit")
    check_trial({"scale": "xl", "optimizer": "muon"}, "vit")
    for bad, fragment in (({"scale": "huge"}, "scale"), ({"optimizer": "lion"}, "optimizer"),
                          ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"widht": 3}, "widht: unknown option"),
                          ({"batch_size": 0}, "batch_size"), ({"patch_size": 3}, "patch_size: 3 does not divide"),
                          ({"device": "cuda:0" if not torch.cuda.is_available() else "nonsense"}, "device")):
        with pytest.raises(ConfigError, match=fragment):
            check_trial(bad, "vit")
    with pytest.raises(ValueError, match="not an option of a vit trial"):
        SweepSpec(name="s", task="vit", axes={"flow": ["icfm"]})


def test_auto_settings_follow_the_notes_rules():
    auto = VitTrialOptions(optimizer="muon")
    s = resolve_settings(auto, params=25_284_106, train_rows=45_000)
    assert (s.batch_size, s.lr, s.aux_lr, s.weight_decay) == (2048, pytest.approx(5e-3), pytest.approx(5e-4), 0.05)
    s = resolve_settings(VitTrialOptions(optimizer="sgd"), params=2_693_578, train_rows=1_259)
    assert s.batch_size == 1_259 and s.lr == pytest.approx(0.1 * 1_259 / 4096) and s.weight_decay == 5e-4
    s = resolve_settings(VitTrialOptions(optimizer="adamw", batch_size=128, lr_reference_batch=128, lr=3e-4),
                         params=2_693_578, train_rows=1_259)
    assert (s.batch_size, s.lr, s.aux_lr) == (128, 3e-4, 0.0)


def test_a_trial_records_what_the_study_compares():
    result = run_vit_trial({**FAST, "optimizer": "muon", "checkpoints": 2})
    c = result["columns"]
    for key in ("train_acc", "val_acc", "test_acc", "test_loss", "gap_acc", "gap_loss", "effective_rank_ratio.hidden",
                "stable_rank.blocks.attn.q", "update_effective_rank.blocks.mlp.fc_in", "effective_rank.patch_embed",
                "effective_rank.head", "mlp_near_zero", "mlp_hoyer", "steps_per_second", "train_seconds",
                "train_peak_rss_mb", "batch_size_used", "lr_used"):
        assert key in c, key
    assert c["gap_acc"] == pytest.approx(c["train_acc"] - c["test_acc"])
    assert c["steps"] == 5 and c["batch_size_used"] == 256 and 0 <= c["mlp_near_zero"] <= 1
    assert [g["group"] for g in result["lr_groups"]][0] == "muon hidden matrices"
    assert result["resolved"]["lr"] == pytest.approx(0.01) and result["resolved"]["aux_lr"] == pytest.approx(1e-3)
    assert [p["step"] for p in result["checkpoints"]] == [2, 5]
    assert result["activations"]["threshold"] == 0.01 and result["data"]["rows"]["train"] == 1259
    json.dumps(result)  # a record must be JSON


def test_a_diverged_trial_is_recorded_without_scores():
    result = run_vit_trial({**FAST, "optimizer": "sgd", "lr": 1e6, "grad_clip": 0.0, "warmup_fraction": 0.0})
    c = result["columns"]
    assert c["diverged"] and result["train"]["diverged_at_step"] is not None
    assert all(math.isnan(c[k]) for k in ("test_acc", "train_acc", "gap_acc", "test_loss"))
    assert "effective_rank_ratio.hidden" not in c and result["weights"] == {}


def test_a_vit_sweep_is_summarized_with_figures_and_answers(tmp_path):
    spec = SweepSpec(name="v", task="vit", axes={"optimizer": ["adamw", "muon"]},
                     fixed={**FAST, "checkpoints": 2}, seeds=[0, 1])
    assert len(expand(spec)) == 4
    run_sweep(spec, tmp_path, TASKS["vit"](str(tmp_path / "runs")))
    summary = summarize_sweep(tmp_path)
    assert summary.metric == "test_acc" and summary.per == "scale"
    assert {p.name for p in summary.written} == {"results.csv", "results.parquet", "scale_study.png", "evolution.png",
                                                 "summary.json"}
    written = json.loads((tmp_path / "summary.json").read_text())
    assert set(written["questions"]) >= {"scale_robustness", "rank_scaling", "cost", "generalization"}
    assert written["winners"][0]["scale"] == "tiny" and written["winners"][0]["best"]["n"] == 2
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert {"test_acc", "gap_acc", "mlp_hoyer", "effective_rank_ratio.hidden"} <= set(header)


def test_a_killed_trial_continues_from_its_state(tmp_path, monkeypatch):
    import contextlib
    import signal

    from scaleflow.sweeps import vit_task
    from scaleflow.training.signals import StopRequest, TrainingInterrupted

    class StopAtThirdStep(StopRequest):  # as if SIGTERM arrived during step 3
        def __init__(self):
            super().__init__()
            self.checks = 0

        def __bool__(self):
            self.checks += 1
            if self.checks == 3:
                self.signum = signal.SIGTERM
            return super().__bool__()

    options = {**FAST, "epochs": 2, "optimizer": "adamw"}
    expected = run_vit_trial(options)
    monkeypatch.setattr(vit_task, "stop_on_signals", lambda: contextlib.nullcontext(StopAtThirdStep()))
    with pytest.raises(TrainingInterrupted):
        run_vit_trial(options, tmp_path, save_every=1e9)
    assert (tmp_path / "state.pt").exists()
    monkeypatch.undo()
    result = run_vit_trial(options, tmp_path)
    assert result["resumed_at_step"] == 3 and result["columns"]["steps"] == 10
    for key in ("test_acc", "test_loss", "train_loss", "effective_rank_ratio.hidden", "update_stable_rank.hidden",
                "mlp_hoyer"):
        assert result["columns"][key] == expected["columns"][key], key
    # through the task: the state is removed once the trial is recorded
    saved = []
    monkeypatch.setattr(vit_task, "write_torch", lambda path, state: saved.append(path) or torch.save(state, path))
    TASKS["vit"](str(tmp_path / "runs"), save_every=0.0)(options)  # a state after every step
    assert len(saved) == 9 and list((tmp_path / "runs").iterdir()) == []
