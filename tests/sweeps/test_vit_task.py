"""The `vit` sweep task: options validated in one place, the note's rules resolved and recorded, a
trial's record, a vit sweep summarized (figures, the four questions answered with intervals)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from scaleflow.sweeps.design import expand
from scaleflow.sweeps.local import run_sweep
from scaleflow.sweeps.report import summarize_sweep
from scaleflow.sweeps.scale_study import answer_questions, compare_at_scales, slope_vs_log_params
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


def _row(optimizer, scale, params, seed, acc, gap, rank, seconds):
    return {"status": "ok", "optimizer": optimizer, "scale": scale, "params": params, "seed": seed, "test_acc": acc,
            "gap_acc": gap, "effective_rank_ratio.hidden": rank, "update_effective_rank_ratio.hidden": rank / 2,
            "train_seconds": seconds * (1 + 0.01 * seed), "steps_per_second": 1 / seconds}


def _rows(n_seeds=3):
    rows = []
    for seed in range(n_seeds):
        wiggle = 0.002 * (seed - 1)
        for scale, params, base in (("tiny", 1_000, 0.80), ("small", 10_000, 0.85)):
            rows.append(_row("adamw", scale, params, seed, base + wiggle, 0.10 + wiggle, 0.5 + wiggle, 10.0))
            rows.append(_row("muon", scale, params, seed, base + 0.05 + wiggle, 0.10 - wiggle, 0.3 + 0.1 * (params == 10_000) + wiggle, 15.0))
    return rows


def test_questions_are_answered_with_intervals_and_verdicts():
    answers = answer_questions(_rows())
    robust = answers["scale_robustness"]["by_pair"]["muon-adamw"]
    assert [c["difference"] for c in robust] == [pytest.approx(0.05), pytest.approx(0.05)]
    assert all(c["verdict"] == "muon higher" and c["ci"][0] > 0 for c in robust)
    assert "At the largest scale where both ran (small) muon has the higher test accuracy" in \
        answers["scale_robustness"]["answer"]
    assert "2 of 2 scales" in answers["scale_robustness"]["answer"]
    rank = answers["rank_scaling"]["slopes"]
    assert rank["adamw"]["slope"] == pytest.approx(0.0, abs=1e-9) and rank["muon"]["slope"] == pytest.approx(0.1)
    assert "adamw has the higher effective rank of the weights" in answers["rank_scaling"]["answer"]
    assert "muon +0.1000 [" in answers["rank_scaling"]["answer"] and "(rises)" in answers["rank_scaling"]["answer"]
    cost = answers["cost"]["time_ratios"]["muon-adamw"]
    assert cost[0]["ratio"] == pytest.approx(1.5) and cost[0]["ci"][0] < 1.5 < cost[0]["ci"][1]
    assert cost[0]["verdict"] == "muon slower"
    assert answers["cost"]["answer"].startswith("muon's training time over adamw's: 1.50x [")
    gap = answers["generalization"]["by_pair"]["muon-adamw"][-1]
    assert gap["verdict"].startswith("cannot tell") and "cannot tell" in answers["generalization"]["answer"]


def test_one_seed_cannot_tell_and_one_optimizer_cannot_compare():
    one = compare_at_scales(_rows(1), "test_acc", "muon", "adamw")
    assert all(c["ci"] is None and c["verdict"] == "cannot tell (one seed)" for c in one)
    assert "cannot tell" in answer_questions(_rows(1))["scale_robustness"]["answer"]
    only_adamw = [r for r in _rows() if r["optimizer"] == "adamw"]
    assert "at least two optimizers" in answer_questions(only_adamw)["cost"]["answer"]
    assert slope_vs_log_params(_rows(1)[:2], "test_acc", "adamw") is None
    one_scale = [r for r in _rows() if r["scale"] == "tiny"]
    assert answer_questions(one_scale)["cost"]["answer"].startswith("muon's training time over adamw's: 1.50x [1.4")


def test_ties_diverged_trials_and_other_varied_options_are_said_as_such():
    tie = [_row(o, "tiny", 1_000, seed, 0.9, 0.1, 0.5, 10.0 + seed) for o in ("adamw", "muon") for seed in (0, 1)]
    (c,) = compare_at_scales(tie, "test_acc", "muon", "adamw")
    assert c["verdict"] == "cannot tell (identical)"
    flat = [_row("adamw", "tiny", 1_000, s, 0.9, 0.1, 0.5, 10.0) for s in (0, 1)] + \
           [_row("muon", "tiny", 1_000, s, 0.95, 0.1, 0.5, 10.0) for s in (0, 1)]
    assert compare_at_scales(flat, "test_acc", "muon", "adamw")[0]["verdict"] == "cannot tell (no spread over seeds)"
    # muon diverged at the largest scale: the answer is about the largest scale where both ran, and says so
    rows = _rows()
    for r in rows:
        if r["optimizer"] == "muon" and r["scale"] == "small":
            r.update(diverged=True, test_acc=float("nan"))
    answers = answer_questions(rows)
    assert "largest scale where both ran (tiny)" in answers["scale_robustness"]["answer"]
    assert "Diverged, left out: muon at small (3 of 3)" in answers["scale_robustness"]["answer"]
    assert answer_questions([{**r, "diverged": True} for r in _rows()])["cost"]["answer"].startswith(
        "The data cannot tell: every trial failed or diverged.")
    # another varied option (epochs) is answered per setting, never pooled as seeds
    both = [{**r, "epochs": 5} for r in _rows()] + [{**r, "epochs": 10, "test_acc": r["test_acc"] - 0.5} for r in _rows()]
    split = answer_questions(both, ["epochs"])
    assert split["context"] == ["epochs"] and set(split["settings"]) == {"epochs=5", "epochs=10"}
    for each in split["settings"].values():
        assert each["scale_robustness"]["by_pair"]["muon-adamw"][0]["difference"] == pytest.approx(0.05)


def test_a_vit_sweep_is_summarized_with_figures_and_answers(tmp_path):
    spec = SweepSpec(name="v", task="vit", axes={"optimizer": ["adamw", "muon"]},
                     fixed={**FAST, "checkpoints": 2}, seeds=[0, 1])
    assert len(expand(spec)) == 4
    run_sweep(spec, tmp_path, TASKS["vit"](str(tmp_path / "runs")))
    summary = summarize_sweep(tmp_path)
    assert summary.metric == "test_acc" and summary.per == "scale"
    assert {p.name for p in summary.written} == {"results.csv", "scale_study.png", "evolution.png", "summary.json"}
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
