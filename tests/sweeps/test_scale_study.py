"""The scale study's answers: differences paired over seeds, each question's verdicts Holm-adjusted over its
pairs x scales, "cannot tell" where one seed or no spread leaves nothing to judge by."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from scaleflow.stats import holm, welch_difference
from scaleflow.sweeps.scale_study import answer_questions, compare_at_scales, holm_adjust, slope_vs_log_params

# A seed moves every optimizer together (the split, the init, the batch order): its effect (+-0.03) dwarfs
# the optimizers' own noise (NOISE), which is what pairing sees through and Welch does not.
SEED_EFFECT = (-0.03, 0.0, 0.03)
NOISE = {"adamw": (0.0, 0.0, 0.0), "muon": (0.001, -0.001, 0.0), "sgd": (0.004, -0.004, 0.0)}
SHIFT = {"adamw": 0.0, "muon": 0.01, "sgd": -0.02}
SCALES = (("tiny", 1_000, 0.80), ("small", 10_000, 0.85))


def _row(optimizer, scale, params, seed, acc, gap, rank, seconds):
    return {"status": "ok", "optimizer": optimizer, "scale": scale, "params": params, "seed": seed, "test_acc": acc,
            "gap_acc": gap, "effective_rank_ratio.hidden": rank, "update_effective_rank_ratio.hidden": rank / 2,
            "train_seconds": seconds, "steps_per_second": 1 / seconds}


def _rows(n_seeds=3, optimizers=("adamw", "muon")):
    """test_acc: muon = adamw + 0.01, sgd = adamw - 0.02 (both +- their noise); gap_acc: muon's 0.006 above
    adamw's at the small scale only; rank ratio: adamw 0.5 flat, muon 0.3 rising 0.1 a decade; time:
    muon 1.5x."""
    rows = []
    for seed in range(n_seeds):
        e = SEED_EFFECT[seed]
        for scale, params, base in SCALES:
            for o in optimizers:
                n = NOISE[o][seed]
                gap = 0.10 + e + 2 * n + (0.006 if o == "muon" and scale == "small" else 0.0)
                rank = (0.3 + 0.1 * (params == 10_000) if o == "muon" else 0.5) + e + n
                seconds = (15.0 if o == "muon" else 10.0) * (1 + e) * (1 + 10 * n)
                rows.append(_row(o, scale, params, seed, base + SHIFT[o] + e + n, gap, rank, seconds))
    return rows


def test_paired_differences_find_what_welch_loses_in_the_spread_over_seeds():
    (tiny, small) = compare_at_scales(_rows(), "test_acc", "muon", "adamw")
    d = np.array([0.011, 0.009, 0.010])  # muon - adamw per seed
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert tiny["method"] == "paired" and tiny["n_compared"] == [3, 3]
    assert tiny["difference"] == pytest.approx(0.01) and tiny["ci"] == pytest.approx([0.01 - half, 0.01 + half])
    assert tiny["width"] == pytest.approx(2 * half) and tiny["p_value"] == pytest.approx(stats.ttest_rel(
        [0.781, 0.809, 0.84], [0.77, 0.80, 0.83]).pvalue)
    assert tiny["verdict"] == "muon higher" and tiny["statement"].startswith("muon higher ([+0.007516, +0.01248], "
                                                                              "width 0.00497, paired, 3 seeds)")
    assert tiny["p_holm"] is None and tiny["family"] is None  # alone: unadjusted, and marked so
    # The same numbers as if from independent seeds: Welch's interval holds 0.
    welch = welch_difference([0.781, 0.809, 0.84], [0.77, 0.80, 0.83])
    assert welch.ci[0] < 0 < welch.ci[1] and welch.width > 10 * tiny["width"]


def test_unpaired_seeds_fall_back_to_welch():
    rows = _rows()
    for r in rows:
        if r["optimizer"] == "muon":
            r["seed"] += 10  # no seed in common
    c = compare_at_scales(rows, "test_acc", "muon", "adamw")[0]
    assert c["method"] == "welch" and c["verdict"] == "no difference at this precision"
    assert c["statement"].startswith("no difference at this precision (") and "width" in c["statement"]


def test_each_question_is_holm_adjusted_over_its_pairs_and_scales():
    answers = answer_questions(_rows(optimizers=("adamw", "muon", "sgd")))
    robust = answers["scale_robustness"]
    assert robust["comparisons"] == 6  # 3 pairs x 2 scales
    assert "Verdicts: 6 comparisons (3 pair(s) x 2 scale(s)), Holm-adjusted" in robust["answer"]
    p = [c["p_value"] for key in ("muon-adamw", "muon-sgd", "adamw-sgd") for c in robust["by_pair"][key]]
    adjusted = [c["p_holm"] for key in ("muon-adamw", "muon-sgd", "adamw-sgd") for c in robust["by_pair"][key]]
    assert adjusted == pytest.approx(holm(p))
    assert all(c["family"] == 6 for cs in robust["by_pair"].values() for c in cs)
    assert answers["rank_scaling"]["comparisons"] == 12  # two measures (weights, updates)
    assert "3 pair(s) x 2 scale(s) x 2 measures" in answers["rank_scaling"]["answer"]
    # Muon's larger gap at the small scale: alone its interval excludes 0 (p 0.035) ...
    alone = compare_at_scales(_rows(optimizers=("adamw", "muon", "sgd")), "gap_acc", "muon", "adamw")[-1]
    assert alone["ci"][0] > 0 and alone["p_value"] == pytest.approx(0.0351, abs=1e-4)
    assert alone["verdict"] == "muon higher"
    # ... but it is one of six comparisons, the rest far from a difference: Holm multiplies it by 6.
    small = answers["generalization"]["by_pair"]["muon-adamw"][-1]
    assert small["p_holm"] == pytest.approx(6 * alone["p_value"])
    assert small["verdict"] == "no difference at this precision"
    assert "Holm-adjusted p 0.211 (interval unadjusted)" in small["statement"]
    assert "the data cannot tell whether muon or adamw has the smaller train-test accuracy gap (muon - adamw = " \
           "+0.006 [+0.001, +0.011], width 0.00994, paired over 3 seeds, Holm-adjusted p 0.211; no difference at " \
           "this precision)" in answers["generalization"]["answer"]


def test_holm_adjust_leaves_untestable_comparisons_out_of_the_count():
    flat = [_row(o, "tiny", 1_000, s, 0.9 + 0.05 * (o == "muon"), 0.1, 0.5, 10.0) for o in ("adamw", "muon")
            for s in (0, 1)]
    comparisons = compare_at_scales(flat, "test_acc", "muon", "adamw") + \
        compare_at_scales(_rows(), "test_acc", "muon", "adamw")
    assert holm_adjust(comparisons) == 2
    assert comparisons[0]["verdict"] == "cannot tell (no spread over seeds)" and comparisons[0]["p_holm"] is None
    # Muon ran one seed at the tiny scale: that comparison cannot be tested, and the answer says so.
    rows = [r for r in _rows() if not (r["optimizer"] == "muon" and r["scale"] == "tiny" and r["seed"] > 0)]
    answer = answer_questions(rows)["scale_robustness"]
    assert answer["comparisons"] == 1 and answer["by_pair"]["muon-adamw"][0]["verdict"] == "cannot tell (one seed)"
    assert "Verdicts: 1 comparison (1 pair(s) x 2 scale(s); 1 more without an interval to test)" in answer["answer"]


def test_the_answers_say_the_interval_the_width_and_the_count():
    answers = answer_questions(_rows())
    robust = answers["scale_robustness"]
    assert robust["answer"].startswith("At the largest scale where both ran (small) muon has the higher test accuracy "
                                       "(muon - adamw = +0.010 [+0.008, +0.012], width 0.00497, paired over 3 seeds, "
                                       "Holm-adjusted p 0.00663); the same holds at 2 of 2 scales. Verdicts: 2 "
                                       "comparisons (1 pair(s) x 2 scale(s)), Holm-adjusted")
    rank = answers["rank_scaling"]["slopes"]
    assert rank["adamw"]["slope"] == pytest.approx(0.0, abs=1e-9) and rank["muon"]["slope"] == pytest.approx(0.1)
    assert "adamw has the higher effective rank of the weights" in answers["rank_scaling"]["answer"]
    assert "muon +0.1000 [" in answers["rank_scaling"]["answer"] and "(rises)" in answers["rank_scaling"]["answer"]


def test_time_ratios_are_paired_on_log_seconds():
    cost = answer_questions(_rows())["cost"]
    (tiny, small) = cost["time_ratios"]["muon-adamw"]
    d = np.log([1.5 * 1.01, 1.5 * 0.99, 1.5])  # per seed: the seed's own slowdown cancels
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert tiny["method"] == "paired" and tiny["ratio"] == pytest.approx(math.exp(d.mean()))
    assert tiny["ci"] == pytest.approx([math.exp(d.mean() - half), math.exp(d.mean() + half)])
    assert tiny["verdict"] == "muon slower" and cost["comparisons"] == 2
    assert tiny["p_holm"] == pytest.approx(2 * stats.ttest_1samp(d, 0.0).pvalue)  # two equal p-values: each doubled
    assert cost["answer"].startswith("muon's training time over adamw's: 1.50x [1.46, 1.54] (width 0.07, paired, "
                                     "Holm-adjusted p 0.000405) at tiny, 1.50x [1.46, 1.54] (width 0.07, paired, "
                                     "Holm-adjusted p 0.000405) at small; the ratio stays within 2%")


def test_one_seed_cannot_tell_and_one_optimizer_cannot_compare():
    one = compare_at_scales(_rows(1), "test_acc", "muon", "adamw")
    assert all(c["ci"] is None and c["verdict"] == "cannot tell (one seed)" for c in one)
    assert one[0]["statement"] == "cannot tell: one seed on a side, no interval"
    answers = answer_questions(_rows(1))
    assert "the data cannot tell whether muon or adamw has the higher test accuracy (muon - adamw = +0.011 (no " \
           "interval: one seed); cannot tell (one seed))" in answers["scale_robustness"]["answer"]
    assert answers["scale_robustness"]["comparisons"] == 0
    assert "No comparison had an interval to test (1 pair(s) x 2 scale(s))" in answers["scale_robustness"]["answer"]
    only_adamw = [r for r in _rows() if r["optimizer"] == "adamw"]
    assert "at least two optimizers" in answer_questions(only_adamw)["cost"]["answer"]
    assert slope_vs_log_params(_rows(1)[:2], "test_acc", "adamw") is None
    one_scale = [r for r in _rows() if r["scale"] == "tiny"]
    assert answer_questions(one_scale)["cost"]["answer"].startswith("muon's training time over adamw's: 1.50x [1.4")
    assert "Verdicts: 1 comparison (1 pair(s) x 1 scale(s))" in answer_questions(one_scale)["cost"]["answer"]


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
        assert each["scale_robustness"]["by_pair"]["muon-adamw"][0]["difference"] == pytest.approx(0.05 - 0.04)
