"""Summaries of sweep records: flat rows with ratios to floors, t intervals over seeds, winners with the
interval of their lead, paired over seeds, and the lead again on seeds that did not choose the winner."""
import csv
import io
import math

import numpy as np
import pytest
from scipy import stats

from scaleflow.stats import welch_difference
from scaleflow.sweeps.summary import aggregate, csv_text, flatten, winners


def _record(tid, config, fd=60.0, precision=0.9, recall=0.8, coverage=0.95, validity=0.9, status="ok"):
    def entry(value, floor):
        return {"value": value, "ci": [value * 0.9, value * 1.1], "floor": floor, "floor_ci": [floor, floor]}

    if status != "ok":
        return {"id": tid, "config": config, "status": "failed", "error": "RuntimeError: nan"}
    return {"id": tid, "config": config, "status": "ok", "peak_rss_mb": 900.0, "result": {
        "params": 1000, "train": {"best_val_loss": 0.5, "steps_per_second": 40.0},
        "metrics": {"fd": {**entry(fd, 50.0), "excess": fd - 50.0, "fd_inf": fd - 45.0},
                    "precision": entry(precision, 0.9), "recall": entry(recall, 1.0),
                    "coverage": entry(coverage, 1.0), "validity": entry(validity, 0.95),
                    "memorization": entry(0.01, 0.02), "mmd": entry(0.1, 0.0)},
        "timing": {"train_seconds": 12.0, "threads": 2},
        "weights": {"blocks.attn": {"effective_rank_ratio": 0.8, "stable_rank": 20.0}}}}


def test_flatten_has_ratios_to_floors_and_the_binding_measure():
    row = flatten(_record("a", {"arch": "dit", "model": {"depth": 2}, "seed": 0}, fd=60.0, recall=0.7))
    assert row["arch"] == "dit" and row["model"] == '{"depth":2}'
    assert row["fd_ratio"] == pytest.approx(1.2) and row["precision_ratio"] == pytest.approx(1.0)
    assert row["recall_ratio"] == pytest.approx(0.7) and row["validity_ratio"] == pytest.approx(0.9 / 0.95)
    assert "mmd_ratio" not in row and "memorization_ratio" not in row  # no meaningful ratio
    # worst of 1/1.2 (FD), 1.0, 0.7, 0.95, 0.947: recall binds
    assert row["worst_ratio"] == pytest.approx(0.7) and row["binding"] == "recall"
    assert row["fd_excess"] == 10.0 and row["fd_inf"] == 15.0 and row["fd_lo"] == pytest.approx(54.0)
    assert row["memorizes_more_than_real"] is False
    assert row["peak_rss_mb"] == 900.0 and row["train_seconds"] == 12.0 and "threads" not in row
    assert row["effective_rank_ratio.blocks.attn"] == 0.8
    fd_bound = flatten(_record("b", {"seed": 0}, fd=150.0))
    assert fd_bound["worst_ratio"] == pytest.approx(1 / 3) and fd_bound["binding"] == "fd"
    zero = flatten(_record("c", {"seed": 0}, precision=0.0))  # a collapsed prior still gets a (zero) score
    assert zero["worst_ratio"] == 0.0 and zero["binding"] == "precision"


def test_failed_trial_row_keeps_config_and_error():
    row = flatten(_record("f", {"arch": "mlp", "seed": 1}, status="failed"))
    assert row == {"id": "f", "status": "failed", "error": "RuntimeError: nan", "arch": "mlp", "seed": 1}


def test_csv_has_the_union_of_columns():
    rows = [flatten(_record("a", {"arch": "dit", "seed": 0})), flatten(_record("f", {"arch": "mlp", "seed": 0}, status="failed"))]
    parsed = list(csv.DictReader(io.StringIO(csv_text(rows))))
    assert [r["id"] for r in parsed] == ["a", "f"]
    assert parsed[1]["fd"] == "" and parsed[1]["error"] == "RuntimeError: nan" and float(parsed[0]["fd"]) == 60.0


def _rows(values_by_setting, n_train=1000):
    rows = []
    for arch, values in values_by_setting.items():
        for seed, recall in enumerate(values):
            rows.append(flatten(_record(f"{arch}{seed}{n_train}", {"arch": arch, "n_train": n_train, "seed": seed},
                                        recall=recall)))
    return rows


def test_aggregate_pools_seeds_and_counts_failures():
    rows = _rows({"dit": [0.8, 0.82, 0.84]}) + [flatten(_record("x", {"arch": "dit", "n_train": 1000, "seed": 9},
                                                                  status="failed"))]
    (group,) = aggregate(rows, "recall_ratio", ["arch"])
    assert group["setting"] == "arch=dit" and group["n"] == 3 and group["n_failed"] == 1
    assert group["mean"] == pytest.approx(0.82)
    assert group["by_seed"] == {0: 0.8, 1: 0.82, 2: 0.84}  # what pairs it with another setting
    # A seed that repeats within a setting cannot be paired: no by_seed, so differences fall back to Welch.
    (twice,) = aggregate(rows + _rows({"dit": [0.5]}), "recall_ratio", ["arch"])
    assert twice["n"] == 4 and twice["by_seed"] is None


def test_winner_per_data_size_with_the_interval_of_its_lead():
    rows = _rows({"dit": [0.90, 0.93, 0.92], "mlp": [0.70, 0.71, 0.72]}, 1000)
    rows += _rows({"dit": [0.80, 0.90, 0.70], "mlp": [0.81, 0.71, 0.91]}, 10000)
    found = {w["n_train"]: w for w in winners(rows, "recall_ratio", ["arch", "n_train"])}
    clear = found[1000]
    assert clear["best"]["setting"] == "arch=dit" and clear["runner_up"]["setting"] == "arch=mlp"
    d = np.array([0.20, 0.22, 0.20])  # dit - mlp, seed by seed
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert clear["lead"] == pytest.approx(d.mean()) and clear["lead_ci"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert clear["lead_width"] == pytest.approx(2 * half) and clear["method"] == "paired" and clear["n_settings"] == 2
    assert clear["lead_p"] == pytest.approx(stats.ttest_rel([0.90, 0.93, 0.92], [0.70, 0.71, 0.72]).pvalue)
    assert clear["verdict"] == "arch=dit better ([+0.178, +0.2354], width 0.0574, paired, 3 seeds)"
    assert clear["selection"].startswith("best and runner-up chosen by their means among 2 settings, on the same "
                                         "seeds the lead is measured on: the lead is optimistic")
    assert clear["held_out"] is None  # 3 seeds: too few to split
    tied = found[10000]
    assert tied["lead_ci"][0] < 0 < tied["lead_ci"][1]
    assert tied["verdict"].startswith("no difference at this precision ([") and ", width " in tied["verdict"]


def test_paired_lead_finds_what_welch_loses_in_the_spread_over_seeds():
    # Seeds move every setting together (0.70 .. 0.90); dit stays 0.02 +- 0.001 above mlp on each.
    dit, mlp = [0.700, 0.800, 0.900, 0.750], [0.679, 0.781, 0.880, 0.731]
    (w,) = winners(_rows({"dit": dit, "mlp": mlp, "unet": [0.5, 0.6, 0.7, 0.55]}), "recall_ratio", ["arch"])
    assert w["method"] == "paired" and w["lead"] == pytest.approx(0.01975) and w["lead_ci"][0] > 0
    assert w["verdict"].startswith("arch=dit better (")
    welch = welch_difference(dit, mlp)
    assert welch.ci[0] < 0 < welch.ci[1] and welch.width > 50 * w["lead_width"]
    assert "among 3 settings" in w["selection"] and "held_out measures it on seeds not used" in w["selection"]
    # Held out: seeds 1 and 3 pick the order (dit, mlp), seeds 0 and 2 measure the lead: 0.021 and 0.020.
    held = w["held_out"]
    assert held["pick_seeds"] == [1, 3] and held["measure_seeds"] == [0, 2]
    assert (held["best"], held["runner_up"], held["method"]) == ("arch=dit", "arch=mlp", "paired")
    half = stats.t.ppf(0.975, 1) * np.std([0.021, 0.020], ddof=1) / math.sqrt(2)
    assert held["lead"] == pytest.approx(0.0205) and held["lead_ci"] == pytest.approx([0.0205 - half, 0.0205 + half])
    assert held["verdict"].startswith("arch=dit better ([+0.01415, +0.02685], width 0.0127, paired, 2 seeds")


def test_held_out_seeds_can_undo_a_lucky_winner():
    # "b" is best on the full means only through its luck on seeds 1 and 3 (+0.03 each).
    seed_effect = np.array([0.70, 0.80, 0.90, 0.75])
    rows = _rows({"a": list(seed_effect), "b": list(seed_effect + [0.001, 0.03, -0.001, 0.03]),
                  "c": list(seed_effect + [0.0, -0.002, 0.002, 0.0])})
    (w,) = winners(rows, "recall_ratio", ["arch"])
    assert (w["best"]["setting"], w["runner_up"]["setting"]) == ("arch=b", "arch=a")
    assert w["lead"] == pytest.approx(0.015)
    # Seeds 1 and 3 pick b over a again; on seeds 0 and 2 its lead is +0.001 and -0.001: nothing.
    held = w["held_out"]
    assert (held["best"], held["runner_up"]) == ("arch=b", "arch=a")
    assert held["lead"] == pytest.approx(0.0, abs=1e-12)
    assert held["verdict"].startswith("no difference at this precision ([-0.01271, +0.01271], width 0.0254, paired")


def test_lower_is_better_metrics_rank_the_other_way_and_one_seed_has_no_interval():
    rows = [flatten(_record("a", {"arch": "dit", "seed": 0}, fd=55.0)),
            flatten(_record("b", {"arch": "mlp", "seed": 0}, fd=70.0))]
    (w,) = winners(rows, "fd", ["arch"])
    assert w["best"]["setting"] == "arch=dit" and w["lead"] == pytest.approx(15.0)
    assert w["lead_ci"] is None and w["lead_width"] is None and w["method"] == "none"
    assert w["verdict"] == "cannot tell: one seed on a side, no interval"
    # Lower is better: the lead is positive where the best is lower, on every seed.
    rows = [flatten(_record(f"{arch}{s}", {"arch": arch, "seed": s}, fd=fd + 10 * s + (0.5 if (s, arch) == (1, "dit") else 0)))
            for arch, fd in (("dit", 55.0), ("mlp", 60.0)) for s in range(3)]
    (w,) = winners(rows, "fd", ["arch"])
    assert w["best"]["setting"] == "arch=dit" and w["lead"] == pytest.approx(14.5 / 3) and w["method"] == "paired"
    assert w["verdict"].startswith("arch=dit better (")


def test_screen_settings_are_named_by_how_they_differ_from_the_base():
    from scaleflow.sweeps.summary import setting_label

    base = {"arch": "dit", "steps": 3000}
    varied = ["n_train", "arch", "steps"]
    assert setting_label({"n_train": 1000, "arch": "dit", "steps": 3000, "seed": 2}, varied, base) == "n_train=1000"
    assert setting_label({"n_train": 1000, "arch": "mlp", "steps": 3000}, varied, base) == "n_train=1000 arch=mlp"
    assert setting_label({"arch": "dit", "steps": 3000}, ["arch", "steps"], base) == "base"
    assert setting_label({"arch": "dit", "steps": 3000}, ["arch", "steps"]) == "arch=dit steps=3000"


def test_a_metric_named_like_an_option_gets_its_own_column():
    # `precision` is also the training's numeric precision, which a sweep may vary
    row = flatten(_record("p", {"precision": "bf16", "seed": 0}, precision=0.45))
    assert row["precision"] == "bf16" and row["sample_precision"] == 0.45 and row["precision_ratio"] == 0.5


def test_direction_of_columns_and_metric_check():
    from scaleflow.sweeps.summary import check_metric, lower_is_better
    from scaleflow.training.config import ConfigError

    assert lower_is_better("fd") and lower_is_better("final_val_loss") and lower_is_better("straightness")
    assert lower_is_better("fd_lo") and not lower_is_better("recall_ratio") and not lower_is_better("worst_ratio")
    check_metric("recall_ratio")
    with pytest.raises(ConfigError, match="--metric 'recal': not a result column"):
        check_metric("recal")


def test_winners_come_in_numeric_order_of_data_size():
    rows = _rows({"dit": [0.9]}, 10000) + _rows({"dit": [0.9]}, 500) + _rows({"dit": [0.9]}, 1000)
    assert [w["n_train"] for w in winners(rows, "recall_ratio", ["arch", "n_train"])] == [500, 1000, 10000]


def test_reference_priors_become_columns_and_dashed_lines_against_data_size(tmp_path):
    from scaleflow.sweeps.plots import _reference_series, plot_measures_vs

    rows = []
    for n_train in (1000, 2000):
        for seed in (0, 1):
            for recipe in ("none", "auto"):  # two settings share each (n_train, seed)'s reference priors
                record = _record(f"{recipe}{n_train}{seed}", {"recipe": recipe, "n_train": n_train, "seed": seed})
                gmm = 0.1 * seed + n_train / 10000
                record["result"]["reference"] = {"priors": {
                    "gmm": {"worst_ratio": gmm, "ratios": {"fd": 0.6, "coverage": gmm}},
                    "gaussian": {"worst_ratio": 0.2, "ratios": {"fd": 0.7, "coverage": 0.2}}}}
                rows.append(flatten(record))
    assert rows[0]["reference.gmm.worst_ratio"] == 0.1 and rows[0]["reference.gaussian.fd_ratio"] == 0.7
    series = _reference_series(rows, "n_train", "worst_ratio")
    assert series["gmm"] == [(1000.0, pytest.approx(0.15)), (2000.0, pytest.approx(0.25))]  # each seed once
    assert series["gaussian"] == [(1000.0, 0.2), (2000.0, 0.2)]
    path = plot_measures_vs(rows, "n_train", ["recipe", "n_train"], tmp_path / "measures_vs_n_train.png")
    assert path.exists() and path.stat().st_size > 0
