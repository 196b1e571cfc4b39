"""The targets of the built-in `target` objective: one fixed split of the eligible held-out rows into `dev`
(tuning) and `test` (reporting), disjoint and deterministic; a problem built on either set has a pool and a
judge that have seen neither."""
from __future__ import annotations

import pytest
import torch

from scaleflow.evaluation.validity import validity_threshold
from scaleflow.search.judge import CandidateJudge
from scaleflow.search.problem import (
    N_DEV_TARGETS,
    N_TARGETS,
    N_TEST_TARGETS,
    TARGET_SETS,
    build_problem,
    choose_targets,
    split_targets,
)


def eligible(held_out: torch.Tensor, judge: CandidateJudge) -> torch.Tensor:
    verdicts = judge(held_out)
    return verdicts.valid & verdicts.novel & (verdicts.nearest_cosine <= verdicts.nearest_cosine.median())


def test_split_is_disjoint_deterministic_and_eligible(tiny_data, problem):
    held_out, judge = tiny_data.pool, problem.judge
    split = split_targets(held_out, judge)
    dev, test = split.dev.tolist(), split.test.tolist()
    assert (len(dev), len(test)) == (N_DEV_TARGETS, N_TEST_TARGETS) == (5, 10)
    assert dev == sorted(dev) and test == sorted(test) and not set(dev) & set(test)
    assert split.all.tolist() == sorted(dev + test)
    assert eligible(held_out, judge)[split.all].all()
    again = split_targets(held_out, judge)
    assert torch.equal(again.dev, split.dev) and torch.equal(again.test, split.test)
    # dev is the former single set of 5 (`choose_targets`), on which the guided defaults were chosen.
    assert torch.equal(split.dev, choose_targets(held_out, judge, 5, seed=0))
    assert torch.equal(split.of("dev"), split.dev) and torch.equal(split.of("test"), split.test)
    with pytest.raises(ValueError, match="'train'"):
        split.of("train")
    other = split_targets(held_out, judge, seed=1)
    assert not torch.equal(other.all, split.all)


def test_too_few_eligible_rows_is_refused(tiny_data, problem):
    n = int(eligible(tiny_data.pool, problem.judge).sum())
    with pytest.raises(ValueError, match=f"only {n} held-out rows"):
        split_targets(tiny_data.pool, problem.judge, n_dev=5, n_test=n - 4)


def number(text: str) -> int:
    return int(text.removeprefix("text number "))


@pytest.fixture(scope="module")
def problems(trained_run):
    run, _ = trained_run
    return {name: build_problem(run, "target", targets=name) for name in TARGET_SETS}


def test_problems_on_either_set_share_pool_and_judge_and_never_see_a_target(trained_run, problems):
    run, data = trained_run
    dev, test = problems["dev"], problems["test"]
    assert (dev.target_set, test.target_set) == ("dev", "test")
    assert dev.targets.shape == (5, 8) and test.targets.shape == (10, 8)
    # Every target of both sets is out of the pool, whichever set is searched: both problems share pool and judge.
    assert test.pool.shape == dev.pool.shape == (100 - 15, 8)
    assert torch.equal(test.pool, dev.pool) and test.pool_texts == dev.pool_texts
    assert test.judge.describe() == dev.judge.describe()
    # The judge's validity threshold comes from the pool (held-out rows minus all targets).
    threshold, _ = validity_threshold(test.reference, test.pool)
    assert test.judge.validity_threshold == threshold and test.judge.describe()["validity_rows"] == 85
    # Texts name the rows: pool, dev and test targets are 100 distinct held-out rows, none a training row.
    parts = [set(map(number, texts)) for texts in (test.reference_texts, test.pool_texts, dev.target_texts,
                                                   test.target_texts)]
    assert [len(p) for p in parts] == [200, 85, 5, 10] and len(set.union(*parts)) == 300
    for rows, texts in ((dev.targets, dev.target_texts), (test.targets, test.target_texts)):
        assert torch.allclose(rows, data[[number(t) for t in texts]], atol=1e-4)
    # The records say which set and which rows (rows of the data file).
    assert test.notes["target_set"] == "test" and dev.notes["target_set"] == "dev"
    assert test.notes["target_file_rows"] == [number(t) for t in test.target_texts]
    assert test.notes["target_sets_file_rows"] == dev.notes["target_sets_file_rows"]
    assert test.notes["target_sets_file_rows"]["dev"] == dev.notes["target_file_rows"]
    # The targets count under the judge searched with (valid and novel), as they did under the one that chose them.
    assert test.judge(test.targets).counts.all() and dev.judge(dev.targets).counts.all()


def test_seeds_cycle_through_the_chosen_set(problems):
    test, dev = problems["test"], problems["dev"]
    for seed, i in ((0, 0), (9, 9), (10, 0), (13, 3)):
        assert test.target_of_seed(seed) == i and test.objective(seed).name == f"target[{i}]"
        assert test.objective(seed)(test.targets)[i].item() == pytest.approx(1.0, abs=1e-6)
    assert dev.target_of_seed(5) == 0 and dev.target_of_seed(7) == 2


def test_bad_target_set(trained_run):
    run, _ = trained_run
    with pytest.raises(ValueError, match="'tune'"):
        build_problem(run, "target", targets="tune")


def test_other_objectives_keep_every_held_out_row(trained_run, tmp_path):
    run, _ = trained_run
    module = tmp_path / "objective_first.py"
    module.write_text("def first(x):\n    return x[:, 0]\n")
    problem = build_problem(run, f"{module}:first")
    assert problem.target_set is None and problem.targets.numel() == 0 and problem.target_of_seed(3) is None
    assert problem.pool.shape == (100, 8) and problem.judge.describe()["validity_rows"] == 100


def test_target_problem_of_a_run(trained_run):
    run, data = trained_run
    problem = build_problem(run, "target")
    assert problem.objective_name == "target" and problem.dim == 8
    assert problem.reference.shape == (200, 8) and problem.pool.shape == (100 - N_DEV_TARGETS - N_TEST_TARGETS, 8)
    assert problem.targets.shape == (N_TARGETS, 8) and len(problem.target_texts) == N_TARGETS
    # Texts name the rows they go with, in every part; no row is in two parts.
    for rows, texts in ((problem.reference, problem.reference_texts), (problem.pool, problem.pool_texts),
                        (problem.targets, problem.target_texts)):
        assert len(texts) == len(rows)
        numbers = [number(t) for t in texts]
        assert torch.allclose(rows, data[numbers], atol=1e-4)
    parts = [set(map(number, t)) for t in (problem.reference_texts, problem.pool_texts, problem.target_texts)]
    assert sum(map(len, parts)) == 300 - N_DEV_TARGETS and len(set.union(*parts)) == 300 - N_DEV_TARGETS
    # Targets: valid, novel, and no nearer to the reference than the median held-out row.
    held_out = torch.cat([problem.pool, problem.targets])
    verdicts = problem.judge(problem.targets)
    assert verdicts.valid.all() and verdicts.novel.all()
    assert (verdicts.nearest_cosine <= problem.judge(held_out).nearest_cosine.median()).all()
    unit = torch.nn.functional.normalize
    best_reference = (unit(problem.targets, dim=1) @ unit(problem.reference, dim=1).T).max(1).values
    assert problem.notes["target_best_reference_cosine"] == pytest.approx(best_reference.tolist(), abs=1e-6)
    # Seed s maximizes the cosine to target s % 5: value 1 at it.
    for seed in (0, 3, 5, 7):
        objective = problem.objective(seed)
        i = seed % N_TARGETS
        assert objective.name == f"target[{i}]" and objective.optimum == 1.0
        scores = objective(problem.targets)
        assert scores[i].item() == pytest.approx(1.0, abs=1e-6)
        assert int(scores.argmax()) == i
    # The normalized space is the run's.
    z = problem.to_normalized(problem.pool)
    assert torch.allclose(problem.to_original(z), problem.pool, atol=1e-5)
    assert torch.allclose(z.mean(0), torch.zeros(8), atol=0.5)


def test_choose_targets(trained_run):
    run, _ = trained_run
    problem = build_problem(run, "target")
    held_out = torch.cat([problem.pool, problem.targets])
    chosen = choose_targets(held_out, problem.judge, 5, seed=0)
    assert chosen.tolist() == sorted(chosen.tolist()) and len(set(chosen.tolist())) == 5
    assert torch.equal(choose_targets(held_out, problem.judge, 5, seed=0), chosen)
    assert not torch.equal(choose_targets(held_out, problem.judge, 5, seed=1), chosen)
    verdicts = problem.judge(held_out)
    eligible = verdicts.valid & verdicts.novel & (verdicts.nearest_cosine <= verdicts.nearest_cosine.median())
    assert eligible[chosen].all()
    n = int(eligible.sum())
    assert len(choose_targets(held_out, problem.judge, n)) == n
    with pytest.raises(ValueError, match=f"only {n} held-out rows"):
        choose_targets(held_out, problem.judge, n + 1)
