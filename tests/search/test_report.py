"""The report of a search folder: whole batches only, best-so-far curves, batch diversity, the summary with its
mean and t interval over seeds, the budget rule, paired leads, the best candidates and the figure."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from scaleflow.search.loop import run_search, search_ledger
from scaleflow.search.methods import METHODS
from scaleflow.search.report import INITIAL, batch_diversity, best_so_far, summarize_search, whole_batches

DIM = 12  # the tiny problem's (tests/search/conftest.py)


def record(method="m", seed=0, step=0, index=0, step_size=1, attempt="a", score=0.0, valid=True, novel=True,
           proposed_by=None, embedding=(1.0, 0.0), seconds=0.0, pool_row=None) -> dict:
    return {"method": method, "seed": seed, "step": step, "index": index, "step_size": step_size, "attempt": attempt,
            "proposed_by": proposed_by or (INITIAL if step == 0 else method), "objective": "t", "score": score,
            "valid": valid, "novel": novel, "nearest_cosine": 0.9, "nearest_distance": 1.0,
            "nearest_texts": [[0.9, 3]], "pool_row": pool_row, "best_so_far": None, "seconds": seconds, "info": {},
            "embedding": list(embedding)}


def batch(step, start, size, attempt, **kw) -> list[dict]:
    return [record(step=step, index=start + i, step_size=size, attempt=attempt, **kw) for i in range(size)]


def indices(records):
    return [(r["step"], r["index"], r["attempt"]) for r in records]


def test_whole_batches_keeps_whole_batches_in_order():
    records = batch(0, 0, 2, "s0") + batch(1, 2, 3, "s1")
    records = records[::-1]  # candidate order is restored whatever the file order
    out = whole_batches(records)
    assert list(out) == [("m", 0)]
    assert [r["index"] for r in out[("m", 0)]] == [0, 1, 2, 3, 4]


def test_whole_batches_drops_a_torn_batch():
    records = batch(0, 0, 2, "s0") + batch(1, 2, 3, "s1") + batch(2, 5, 3, "torn")[:2]
    assert indices(whole_batches(records)[("m", 0)]) == indices(records[:5])


def test_whole_batches_after_a_torn_batch_and_its_rewrite():
    # A kill mid-write left 1 line of step 2; the resumed search wrote step 2 again, whole, then step 3.
    records = (batch(0, 0, 2, "s0") + batch(1, 2, 2, "s1") + batch(2, 4, 2, "torn")[:1]
               + batch(2, 4, 2, "again") + batch(3, 6, 2, "s3"))
    out = whole_batches(records)[("m", 0)]
    assert [r["index"] for r in out] == list(range(8))
    assert [r["attempt"] for r in out] == ["s0", "s0", "s1", "s1", "again", "again", "s3", "s3"]


def test_whole_batches_takes_the_last_whole_copy_of_a_repeated_step():
    first = batch(1, 2, 2, "first", score=1.0)
    last = batch(1, 2, 2, "last", score=2.0)
    records = batch(0, 0, 2, "s0") + first + last + batch(1, 2, 2, "torn", score=3.0)[:1]
    out = whole_batches(records)[("m", 0)]
    assert [r["attempt"] for r in out[2:]] == ["last", "last"]
    assert [r["score"] for r in out] == [0.0, 0.0, 2.0, 2.0]


def test_whole_batches_stops_at_a_missing_step():
    records = batch(0, 0, 2, "s0") + batch(1, 2, 2, "torn")[:1] + batch(2, 4, 2, "s2")
    assert indices(whole_batches(records)[("m", 0)]) == indices(records[:2])
    # Nothing whole at all: no entry.
    assert whole_batches(batch(0, 0, 3, "torn")[:2]) == {}
    assert whole_batches([]) == {}


def test_whole_batches_separates_methods_and_seeds():
    a0 = [record(method="a", seed=0, step=0, index=i, step_size=2, attempt="x") for i in range(2)]
    a1 = [record(method="a", seed=1, step=0, index=i, step_size=2, attempt="x") for i in range(2)]  # same token
    b0 = [record(method="b", seed=0, step=0, index=i, step_size=1, attempt="y") for i in range(1)]
    records = [a0[0], a1[0], b0[0], a1[1], a0[1]]
    out = whole_batches(records)
    assert set(out) == {("a", 0), ("a", 1), ("b", 0)}
    assert out[("a", 0)] == a0 and out[("a", 1)] == a1 and out[("b", 0)] == b0


def test_best_so_far_curve():
    scores = [0.3, 0.9, 0.5, 0.95, 1.2, 0.2, 0.97]
    valid = [False, False, True, True, True, True, True]
    novel = [True, True, True, False, True, True, True]
    records = [record(index=i, score=s, valid=v, novel=n) for i, (s, v, n) in enumerate(zip(scores, valid, novel))]
    assert best_so_far(records) == [None, None, 0.5, 0.5, 1.2, 1.2, 1.2]
    assert best_so_far([]) == []
    assert best_so_far([record(score=-1.0), record(score=-2.0)]) == [-1.0, -1.0]


def test_batch_diversity():
    g = torch.Generator().manual_seed(0)
    same = torch.randn(8, generator=g).tolist()
    identical = [record(step=1, index=i, embedding=same) for i in range(4)]
    assert batch_diversity(identical) == pytest.approx(1.0, abs=1e-12)
    orthogonal = [record(step=1, index=i, embedding=3.0 * np.eye(5)[i]) for i in range(5)]
    assert batch_diversity(orthogonal) == pytest.approx(0.0, abs=1e-12)
    # Averaged over batches; the initial design and one-row batches are left out.
    initial = [record(step=0, index=i, embedding=same) for i in range(3)]
    lonely = [record(step=3, index=20, embedding=np.eye(5)[0])]
    mixed = initial + identical + [dict(r, step=2) for r in orthogonal] + lonely
    assert batch_diversity(mixed) == pytest.approx(0.5, abs=1e-12)
    # Opposite rows: -1; a pair at 60 degrees: 0.5.
    assert batch_diversity([record(step=1, embedding=(1, 0)), record(step=1, embedding=(-2, 0))]) == pytest.approx(-1)
    pair = [record(step=1, embedding=(1, 0)), record(step=1, embedding=(0.5, math.sqrt(3) / 2))]
    assert batch_diversity(pair) == pytest.approx(0.5)
    assert batch_diversity(initial) is None and batch_diversity(lonely) is None and batch_diversity([]) is None


# ---------------------------------------------------------------- summarize_search on records made by hand


def seed_records(method, seed, initial_scores, later_scores, later_valid=None, seconds=0.1, embeddings=None,
                 start_step=0) -> list[dict]:
    """Step 0: the initial rows (all valid and novel unless the score is negative); step 1: the later ones."""
    out = []
    for i, s in enumerate(initial_scores):
        out.append(record(method=method, seed=seed, step=0, index=i, step_size=len(initial_scores),
                          attempt=f"{method}{seed}0", score=s, valid=s >= 0, novel=True, pool_row=i))
    later_valid = later_valid or [True] * len(later_scores)
    for i, (s, v) in enumerate(zip(later_scores, later_valid)):
        out.append(record(method=method, seed=seed, step=1, index=len(initial_scores) + i,
                          step_size=len(later_scores), attempt=f"{method}{seed}1", score=s, valid=v, novel=True,
                          seconds=seconds, embedding=embeddings[i] if embeddings else (1.0, float(i))))
    return out


@pytest.fixture
def hand_folder(tmp_path):
    """Method a: 3 seeds with bests 0.5, 0.7, 0.9; method b: seeds with bests 0.4, 0.6 and one with none."""
    records = (
        seed_records("a", 0, [0.1, 0.2], [0.5, 5.0], later_valid=[True, False], seconds=0.1,
                     embeddings=[(1, 0), (1, 0)])
        + seed_records("a", 1, [0.7, 0.3], [0.6, 0.2], seconds=0.2, embeddings=[(1, 0), (0, 1)])
        + seed_records("a", 2, [0.4, 0.5], [0.9, 0.8], seconds=0.3, embeddings=[(0, 2), (0, 3)])
        + seed_records("b", 0, [0.4, 0.1], [0.3, 0.35], later_valid=[True, False])
        + seed_records("b", 1, [0.2, 0.2], [0.6, 0.5])
        + seed_records("b", 2, [-1.0, -2.0], [0.7, 0.8], later_valid=[False, False])
    )
    # A torn batch (one line of a 2-line step 2) of a, seed 0: not counted anywhere, although its score is best.
    records.append(record(method="a", seed=0, step=2, index=4, step_size=2, attempt="torn", score=99.0))
    search_ledger(tmp_path).append_many(records)
    return tmp_path


def test_summary_numbers_by_hand(hand_folder):
    summary = summarize_search(hand_folder)
    rows = {row["method"]: row for row in summary.methods}
    assert list(rows) == ["a", "b"]
    a, b = rows["a"], rows["b"]

    assert a["seeds"] == [0, 1, 2] and a["evaluations"] == {0: 4, 1: 4, 2: 4}
    assert a["best_per_seed"] == {0: 0.5, 1: 0.7, 2: 0.9}
    assert a["best"] == pytest.approx(0.7, abs=1e-12)
    half = 4.302652729749464 * 0.2 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n); sd of (0.5, 0.7, 0.9) is 0.2
    assert stats.t.ppf(0.975, 2) == pytest.approx(4.302652729749464, rel=1e-9)
    assert a["best_interval"] == pytest.approx([0.7 - half, 0.7 + half], abs=1e-9)
    assert a["seeds_without_valid_novel"] == 0
    assert a["best_any"] == pytest.approx((5.0 + 0.7 + 0.9) / 3)
    # Shares over the generated candidates only (the initial design left out).
    assert a["valid_share"] == pytest.approx(5 / 6) and a["novel_share"] == 1.0
    assert a["counted_share"] == pytest.approx(5 / 6)
    assert a["batch_cosine"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert a["seconds_per_batch"] == pytest.approx(0.2)

    assert b["best_per_seed"] == {0: 0.4, 1: 0.6, 2: None} and b["seeds_without_valid_novel"] == 1
    assert b["best"] == pytest.approx(0.5)
    half_b = 12.706204736174707 * math.sqrt(0.02) / math.sqrt(2)  # t(0.975, 1), sd of (0.4, 0.6)
    assert b["best_interval"] == pytest.approx([0.5 - half_b, 0.5 + half_b], abs=1e-9)
    assert b["best_any"] == pytest.approx((0.4 + 0.6 + 0.8) / 3)
    assert b["valid_share"] == pytest.approx(3 / 6)

    # Leads: b found no valid novel candidate on seed 2, so its mean leaves out its hardest target: it is not
    # compared (a lead over it would be measured on the seeds it did well on), and a has no rival left.
    assert a["budget_complete"] and b["budget_complete"]
    assert "lead_over" not in b and b["lead_note"].startswith("1 of 3 seeds found no valid novel candidate")
    assert "lead_over" not in a and "lead_note" not in a
    assert summary.budget == 4 and summary.budget_source == "largest seen"  # no search.json in this folder

    # What was written: the same numbers (JSON makes seed keys strings).
    written = json.loads((hand_folder / "summary.json").read_text())
    on_disk = {row["method"]: row for row in written["methods"]}
    assert on_disk["a"]["best"] == pytest.approx(0.7) and on_disk["a"]["best_interval"] == pytest.approx(
        a["best_interval"])
    assert on_disk["b"]["best_per_seed"] == {"0": 0.4, "1": 0.6, "2": None}
    assert summary.written == [hand_folder / "summary.json", hand_folder / "best.json",
                               hand_folder / "figures" / "best_so_far.png"]

    best = json.loads((hand_folder / "best.json").read_text())
    assert [c["score"] for c in best["a"]] == [0.9, 0.8, 0.7, 0.6, 0.5]  # top 5 counted; 5.0 invalid, 99 torn
    assert [(c["seed"], c["index"]) for c in best["a"][:3]] == [(2, 2), (2, 3), (1, 0)]
    assert set(best["a"][0]) == {"seed", "index", "score", "nearest_cosine", "nearest_texts", "pool_row"}
    assert [c["score"] for c in best["b"]] == [0.6, 0.5, 0.4, 0.3, 0.2]

    png = (hand_folder / "figures" / "best_so_far.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_summary_of_an_empty_folder(tmp_path):
    summary = summarize_search(tmp_path)
    assert summary.methods == []
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["methods"] == [] and written["budget"] is None and written["budget_source"] is None
    assert json.loads((tmp_path / "best.json").read_text()) == {}
    assert not (tmp_path / "figures").exists()


def test_single_seed_has_no_interval_and_no_lead_interval(tmp_path):
    search_ledger(tmp_path).append_many(seed_records("a", 0, [0.1], [0.4, 0.3])
                                                   + seed_records("b", 0, [0.1], [0.2, 0.3]))
    rows = {r["method"]: r for r in summarize_search(tmp_path).methods}
    assert rows["a"]["best"] == 0.4 and rows["a"]["best_interval"] is None
    assert rows["a"]["lead"] == pytest.approx(0.1) and rows["a"]["lead_interval"] is None


def test_summary_with_batches_of_one_is_valid_json(tmp_path):
    search_ledger(tmp_path).append_many(
        seed_records("a", 0, [0.1], [0.4]) + [record(method="a", seed=0, step=2, index=2, step_size=1,
                                                     attempt="x", score=0.2)])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice"
        rows = summarize_search(tmp_path).methods
    assert rows[0]["batch_cosine"] is None

    def no_constants(name):
        raise ValueError(f"not JSON: {name}")

    json.loads((tmp_path / "summary.json").read_text(), parse_constant=no_constants)


def _settings(folder, budget):
    (folder / "search.json").write_text(json.dumps({"budget": budget}))


def test_a_short_or_long_budget_is_marked_and_not_compared(tmp_path):
    # Budget 4 (search.json): a has 4 evaluations on every seed; b's seed 2 stopped after its initial rows;
    # c's seed 0 went on to a third step (6 evaluations).
    records = (seed_records("a", 0, [0.1, 0.2], [0.5, 0.6]) + seed_records("a", 1, [0.1, 0.2], [0.7, 0.1])
               + seed_records("a", 2, [0.1, 0.2], [0.4, 0.3])
               + seed_records("b", 0, [0.1, 0.2], [0.9, 0.9]) + seed_records("b", 1, [0.1, 0.2], [0.9, 0.9])
               + seed_records("b", 2, [0.1, 0.2], [])
               + seed_records("c", 0, [0.1, 0.2], [0.8, 0.8]) + seed_records("c", 1, [0.1, 0.2], [0.8, 0.8])
               + seed_records("c", 2, [0.1, 0.2], [0.8, 0.8])
               + [record(method="c", seed=0, step=2, index=4 + i, step_size=2, attempt="c02", score=0.95)
                  for i in range(2)])
    search_ledger(tmp_path).append_many(records)
    _settings(tmp_path, 4)
    summary = summarize_search(tmp_path)
    rows = {r["method"]: r for r in summary.methods}
    assert summary.budget == 4 and summary.budget_source == "search.json"
    assert rows["a"]["budget_complete"] and rows["a"]["best"] == pytest.approx((0.6 + 0.7 + 0.4) / 3)
    assert rows["b"]["evaluations"] == {0: 4, 1: 4, 2: 2} and not rows["b"]["budget_complete"]
    assert rows["c"]["evaluations"] == {0: 6, 1: 4, 2: 4} and not rows["c"]["budget_complete"]
    for method in ("b", "c"):  # no reported score, no lead, and nobody leads over them
        assert rows[method]["best"] is None and rows[method]["best_interval"] is None
        assert "lead" not in rows[method]
    assert rows["b"]["best_per_seed"] == {0: 0.9, 1: 0.9, 2: 0.2}  # the facts stay in the summary
    assert "lead" not in rows["a"]  # the only reported method: nothing to compare with
    # Held to budget 6 instead (an argument), only c's seed 0 is complete: nothing is reported.
    held = summarize_search(tmp_path, budget=6)
    assert held.budget_source == "argument" and not any(r["budget_complete"] for r in held.methods)


def test_paired_lead_by_hand(tmp_path):
    """Four seeds; the leader and the runner-up move together across seeds (a seed's target is easy or hard for
    both), so the paired interval is much narrower than Welch's."""
    best = {"lead": [0.80, 0.60, 0.90, 0.70], "second": [0.70, 0.52, 0.78, 0.61], "third": [0.3, 0.3, 0.3, 0.3]}
    records = []
    for method, values in best.items():
        for seed, value in enumerate(values):
            records += seed_records(method, seed, [0.0, 0.0], [value, 0.0])
    search_ledger(tmp_path).append_many(records)
    _settings(tmp_path, 4)
    rows = {r["method"]: r for r in summarize_search(tmp_path).methods}
    d = np.array(best["lead"]) - np.array(best["second"])
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    lead = rows["lead"]
    assert lead["lead_over"] == "second" and lead["lead"] == pytest.approx(d.mean())
    assert lead["lead_interval"] == pytest.approx([d.mean() - half, d.mean() + half], abs=1e-9)
    assert lead["lead_interval_method"] == "paired" and lead["lead_seeds"] == [4, 4]
    assert lead["lead_interval_width"] == pytest.approx(2 * half, abs=1e-9)
    p = 2 * stats.t.sf(d.mean() / (d.std(ddof=1) / 2), 3)
    assert lead["lead_p_value"] == pytest.approx(p, rel=1e-9)
    welch_half = stats.ttest_ind(best["lead"], best["second"], equal_var=False).confidence_interval(0.95)
    assert 2 * half < 0.5 * (welch_half.high - welch_half.low)
    assert rows["second"]["lead_over"] == "lead" and rows["third"]["lead_over"] == "lead"
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["budget"] == 4 and "paired" in written["rules"]


# ---------------------------------------------------------------- summarize_search of real searches


def test_summary_of_real_searches(problem, tmp_path):
    budget, size = 12, 4
    for method in ("random", "prior"):
        for seed in (0, 1, 2):
            run_search(problem, METHODS[method](), budget, size, seed, tmp_path)
    store = search_ledger(tmp_path)
    records = store.records()
    assert len(records) == 2 * 3 * budget
    # A kill mid-write of a further batch: half a line at the end changes nothing.
    with open(store.path, "ab") as f:
        f.write(json.dumps(records[-1])[:40].encode())
    summary = summarize_search(tmp_path)
    rows = {r["method"]: r for r in summary.methods}
    assert set(rows) == {"random", "prior"}
    for method, row in rows.items():
        bests = []
        for seed in (0, 1, 2):
            mine = [r for r in records if r["method"] == method and r["seed"] == seed]
            counted = [r["score"] for r in mine if r["valid"] and r["novel"]]
            bests.append(max(counted))  # the initial pool rows nearly always count
            assert row["best_per_seed"][seed] == max(counted)
            assert row["evaluations"][seed] == budget
        mean = float(np.mean(bests))
        half = stats.t.ppf(0.975, 2) * np.std(bests, ddof=1) / math.sqrt(3)
        assert row["best"] == pytest.approx(mean, abs=1e-12)
        assert row["best_interval"] == pytest.approx([mean - half, mean + half], abs=1e-9)
        generated = [r for r in records if r["method"] == method and r["proposed_by"] != INITIAL]
        assert len(generated) == 3 * (budget - size)
        assert row["counted_share"] == pytest.approx(np.mean([r["valid"] and r["novel"] for r in generated]))
        assert row["valid_share"] == pytest.approx(np.mean([r["valid"] for r in generated]))
        assert -1.0 <= row["batch_cosine"] <= 1.0
    best = json.loads((tmp_path / "best.json").read_text())
    for method in ("random", "prior"):
        scores = sorted((r["score"] for r in records if r["method"] == method and r["valid"] and r["novel"]),
                        reverse=True)[:5]
        assert [c["score"] for c in best[method]] == scores
    assert (tmp_path / "figures" / "best_so_far.png").stat().st_size > 1000


def test_a_folder_from_before_the_hinge_builds_the_mean_cosine_term(tmp_path):
    import json as _json

    from scaleflow.search.methods import build_method
    from scaleflow.search.report import read_folder_settings

    path = tmp_path / "search.json"
    path.write_text(_json.dumps({"mode": "ask-tell", "method": "guided"}))  # an ask/tell folder before the hinge
    method = build_method("guided", read_folder_settings(path))
    assert (method.diversity, method.diversity_cosine) == (1.0, None)
    path.write_text(_json.dumps({"diversity": 3.0}))  # an optimize folder before it: its weight was recorded
    method = build_method("guided", read_folder_settings(path))
    assert (method.diversity, method.diversity_cosine) == (3.0, None)
    assert (build_method("guided", {}).diversity, build_method("guided", {}).diversity_cosine) == (10.0, 0.5)
