"""`scaleflow optimize` and `scaleflow sample --guide` end to end, as users type them: every output, resume,
a failing objective that keeps its records, the target sets, the budget rule in the table, the baselines'
tuning knobs, and one-line errors for mistakes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lock_holder import held_by_another_process


FAST = ["--budget", "12", "--batch", "4", "--steps", "4", "--strength", "50"]


def _scaleflow(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "scaleflow"
    if not script.exists():
        pytest.skip("the scaleflow console script is not installed next to this interpreter (pip install -e .)")
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    env.pop("SCALEFLOW_DEBUG", None)
    return subprocess.run([str(script), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


def _lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "search.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def searched(text_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search") / "target"
    done = _scaleflow("optimize", text_run, "--out", out, "--method", METHODS_RUN, "--seeds", "2", *FAST)
    assert done.returncode == 0, done.stderr
    return out


METHODS_RUN = "guided,prior-filtered,prior,random,retrieval"


def test_optimize_writes_every_output(searched):
    records = _lines(searched)
    assert len(records) == 5 * 2 * 12
    for method in ("guided", "prior-filtered", "prior", "random", "retrieval"):
        for seed in (0, 1):
            mine = [r for r in records if r["method"] == method and r["seed"] == seed]
            assert [r["index"] for r in mine] == list(range(12))
            assert all(len(r["embedding"]) == 8 and np.isfinite(r["log_density"]) for r in mine)
            # every method of a seed starts from the same real rows
            assert [r["pool_row"] for r in mine[:4]] == [r["pool_row"] for r in records
                                                        if r["method"] == "random" and r["seed"] == seed][:4]
    assert {r["objective"] for r in records if r["seed"] == 0} != {r["objective"] for r in records if r["seed"] == 1}
    # prior-filtered scores only what the judge counts, when enough of its 4x draws do.
    filtered = [r for r in records if r["method"] == "prior-filtered" and r["proposed_by"] != "initial"]
    for r in filtered:
        assert r["info"]["drawn"] == 16 and (r["valid"] and r["novel"] or r["info"]["drawn_counted"] < 4)
    summary = json.loads((searched / "summary.json").read_text())
    rows = {m["method"]: m for m in summary["methods"]}
    assert sorted(rows) == ["guided", "prior", "prior-filtered", "random", "retrieval"]
    assert summary["budget"] == 12 and all(m["budget_complete"] for m in rows.values())
    assert {m["lead_interval_method"] for m in rows.values()} == {"paired"}  # 2 seeds, shared by every method
    best = json.loads((searched / "best.json").read_text())
    assert set(best) == set(rows)
    assert (searched / "figures" / "best_so_far.png").stat().st_size > 10_000
    problem = json.loads((searched / "problem.json").read_text())
    assert problem["target_set"] == "test" and len(problem["target_texts"]) == 10
    assert problem["target_of_seed"] == {"0": 0, "1": 1} and problem["targets_cycle"] is False
    assert not set(problem["target_sets_file_rows"]["dev"]) & set(problem["target_sets_file_rows"]["test"])
    assert 0 < problem["validity_threshold"] < 1 and problem["validity_rows"] == 100 - 15
    assert 0 < problem["novelty_cosine"] < 1 and problem["judge_version"] == 2
    settings = json.loads((searched / "search.json").read_text())
    assert settings["budget"] == 12 and settings["guidance"]["strength"] == 50
    assert settings["targets"] == "test" and settings["judge"] == 2
    assert (settings["cmaes_sigma"], settings["turbo_length"], settings["latent_scale"]) == (0.5, 0.8, 0.3)
    # One objective: the settings and records of before several objectives existed.
    assert settings["objective"] == "target" and settings["acquisition"] == "ucb" and "ref_point" not in settings
    assert not any("scores" in r or "ref_point" in r for r in records) and "pareto" not in summary


def test_rerun_scores_nothing_new(searched, text_run):
    before = (searched / "search.jsonl").read_bytes()
    done = _scaleflow("optimize", text_run, "--out", searched, "--method", METHODS_RUN, "--seeds", "2", *FAST)
    assert done.returncode == 0, done.stderr
    assert (searched / "search.jsonl").read_bytes() == before


def test_other_settings_in_the_same_folder_are_refused(searched, text_run):
    done = _scaleflow("optimize", text_run, "--out", searched, "--method", "guided", "--seeds", "2",
                      *FAST[:-1], "100")
    assert done.returncode == 2
    assert "guidance differ" in done.stderr and "search.json" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_busy_search_folder_is_refused_in_one_line(searched, text_run):
    before = {p.name: p.read_bytes() for p in searched.iterdir() if p.is_file() and p.name != ".lock"}
    with held_by_another_process(searched) as holder:
        done = _scaleflow("optimize", text_run, "--out", searched, "--method", METHODS_RUN, "--seeds", "2", *FAST)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(message) == 1 and f"another search is writing this folder (pid {holder.pid} on" in message[0]
    assert "choose another --out" in message[0]
    after = {p.name: p.read_bytes() for p in searched.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before  # nothing written, nothing lost


def test_failing_objective_stops_with_one_line_and_keeps_its_records(text_run, tmp_path):
    objective = tmp_path / "flaky.py"
    objective.write_text(
        "import pathlib, torch\n"
        f"COUNTER = pathlib.Path({str(tmp_path / 'calls')!r})\n"
        "def score(x):\n"
        "    calls = int(COUNTER.read_text()) if COUNTER.exists() else 0\n"
        "    COUNTER.write_text(str(calls + 1))\n"
        "    if calls == 2:\n"
        "        raise RuntimeError('the lab instrument is offline')\n"
        "    return x[:, 0]\n")
    out = tmp_path / "flaky"
    done = _scaleflow("optimize", text_run, "--objective", f"{objective}:score", "--out", out, "--method", "prior",
                      "--seeds", "1", *FAST)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the lab instrument is offline" in errors[0] and "RuntimeError" in errors[0]
    assert "Traceback" not in done.stderr
    records = _lines(out)
    assert [r["index"] for r in records] == list(range(8))  # two whole batches before the failing call
    # Fixed, the same command continues from there.
    (tmp_path / "calls").write_text("100")
    done = _scaleflow("optimize", text_run, "--objective", f"{objective}:score", "--out", out, "--method", "prior",
                      "--seeds", "1", *FAST)
    assert done.returncode == 0, done.stderr
    assert [r["index"] for r in _lines(out)] == list(range(12))
    assert _lines(out)[:8] == records
    # A larger budget extends the same search.
    extended = [a if a != "12" else "16" for a in FAST]
    done = _scaleflow("optimize", text_run, "--objective", f"{objective}:score", "--out", out, "--method", "prior",
                      "--seeds", "1", *extended)
    assert done.returncode == 0, done.stderr
    assert [r["index"] for r in _lines(out)] == list(range(16))


def test_killed_search_resumes_to_the_same_records(text_run, tmp_path):
    """kill -9 in the middle, rerun: the records equal an uninterrupted search's (timing fields aside)."""
    script = Path(sys.executable).parent / "scaleflow"
    args = [str(script), "optimize", str(text_run), "--method", "guided", "--seeds", "1", "--budget", "40", "--batch",
            "4", "--steps", "4", "--strength", "50"]
    whole = _scaleflow(*args[1:], "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    killed = tmp_path / "killed"
    process = subprocess.Popen([*args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline:
        file = killed / "search.jsonl"
        if file.exists() and len(file.read_bytes().splitlines()) >= 12:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len((killed / "search.jsonl").read_bytes().splitlines()) < 40
    done = _scaleflow(*args[1:], "--out", killed)
    assert done.returncode == 0, done.stderr

    def comparable(folder):
        return [(r["index"], r["score"], r["embedding"], r["valid"], r["novel"]) for r in _lines(folder)]

    resumed = comparable(killed)
    assert [r[0] for r in resumed] == list(range(40))
    assert resumed == comparable(tmp_path / "whole")


def test_dev_targets_cycle_and_say_so(cli, text_run, tmp_path):
    out = tmp_path / "dev"
    done = cli(["optimize", text_run, "--out", out, "--method", "random", "--targets", "dev", "--seeds", "7",
                "--budget", "4", "--batch", "4"])
    assert done.exit_code == 0, done.output
    problem = json.loads((out / "problem.json").read_text())
    assert problem["target_set"] == "dev" and len(problem["target_texts"]) == 5 and problem["targets_cycle"] is True
    assert problem["target_of_seed"]["5"] == 0 and problem["target_of_seed"]["6"] == 1
    assert {r["objective"] for r in _lines(out) if r["seed"] == 6} == {"target[1]"}
    assert "reuse the 5 dev targets" in " ".join(done.output.split())
    assert json.loads((out / "search.json").read_text())["targets"] == "dev"
    # The same folder refuses the other set.
    refused = cli(["optimize", text_run, "--out", out, "--method", "random", "--seeds", "7", "--budget", "4",
                   "--batch", "4"])
    assert refused.exit_code == 2 and "targets differ" in refused.output
    # Without --seeds: one seed per target of the set.
    done = cli(["optimize", text_run, "--out", tmp_path / "all_dev", "--method", "random", "--targets", "dev",
                "--budget", "4", "--batch", "4"])
    assert done.exit_code == 0, done.output
    assert sorted({r["seed"] for r in _lines(tmp_path / "all_dev")}) == [0, 1, 2, 3, 4]


def test_the_table_marks_a_method_with_a_short_budget(cli, text_run, tmp_path):
    """random ran to 8 evaluations; the folder's budget is then raised to 12 for cmaes only: random is marked
    short, not compared, and nothing leads over it. The tuning knob (--cmaes-sigma) reaches the method."""
    out = tmp_path / "short"
    knob = ["--cmaes-sigma", "0.3", "--batch", "4", "--seeds", "2"]
    done = cli(["optimize", text_run, "--out", out, "--method", "random", "--budget", "8", *knob])
    assert done.exit_code == 0, done.output
    done = cli(["optimize", text_run, "--out", out, "--method", "cmaes,prior", "--budget", "12", *knob])
    assert done.exit_code == 0, done.output
    table = [line for line in done.output.splitlines() if line.startswith("│ ")]
    random_line = next(line for line in table if line.startswith("│ random "))
    assert "8 of 12: short" in random_line and "not compared" in random_line
    assert all("vs random" not in line for line in table)
    summary = json.loads((out / "summary.json").read_text())
    rows = {m["method"]: m for m in summary["methods"]}
    assert summary["budget"] == 12 and summary["budget_source"] == "search.json"
    assert not rows["random"]["budget_complete"] and rows["random"]["best"] is None
    assert rows["cmaes"]["budget_complete"] and rows["cmaes"]["lead_over"] == "prior"
    assert json.loads((out / "search.json").read_text())["budget"] == 12
    cmaes = [r for r in _lines(out) if r["method"] == "cmaes" and r["step"] == 1]
    assert cmaes[0]["info"]["sigma"] == pytest.approx(0.3)


def _row(method, evaluations, best=None, **extra):
    return {"method": method, "seeds": sorted(evaluations), "evaluations": evaluations,
            "budget_complete": all(n == 12 for n in evaluations.values()), "best": best,
            "best_interval": None if best is None else [best - 0.1, best + 0.1], "best_any": 0.9,
            "counted_share": 1.0, "batch_cosine": 0.5, "seconds_per_batch": 0.1, **extra}


def test_the_table_marks_short_and_long_budgets():
    from rich.console import Console

    from scaleflow.cli.optimize import _print_table

    rows = [_row("short", {0: 12, 1: 8}), _row("long", {0: 16, 1: 16}), _row("mixed", {0: 8, 1: 16}),
            _row("good", {0: 12, 1: 12}, 0.7, lead=0.2, lead_interval=[0.1, 0.3], lead_interval_method="paired",
                 lead_over="other"),
            _row("other", {0: 12, 1: 12}, 0.5, lead=-0.2, lead_interval=None, lead_interval_method="none",
                 lead_over="good")]
    console = Console(record=True, width=250)
    _print_table(console, rows, 12, "a note")
    text = console.export_text()
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│ ")}
    assert list(lines) == ["good", "other", "long", "mixed", "short"]  # compared methods first, by best
    marks = {"short": "8-12 of 12: short", "long": "16 of 12: over", "mixed": "8-16 of 12: short and over"}
    for method, mark in marks.items():
        assert mark in lines[method] and "not compared" in lines[method] and "budget not met" in lines[method]
    assert "+0.200 [+0.100, +0.300] vs other" in lines["good"] and "0.700" in lines["good"]
    assert "-0.200 none vs good" in lines["other"]
    assert "a note" in " ".join(text.split())


def test_an_older_folder_is_refused(cli, user_error, text_run, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "search.json").write_text(json.dumps({"run": str(text_run), "objective": "target", "budget": 8}))
    user_error(cli(["optimize", text_run, "--out", out, "--method", "random", "--budget", "8"]), "judge", "targets",
               "earlier rules", "new --out")


@pytest.mark.parametrize("args, fragments", [
    (["--method", "bogus"], ["--method", "bogus", "guided"]),
    (["--seeds", "two"], ["--seeds"]),
    (["--objective", "no_colon"], ["--objective", "MODULE:FUNCTION"]),
    (["--objective", "missing_module_xyz:f"], ["--objective", "missing_module_xyz"]),
    (["--objective", "category"], ["category", "built-in data"]),
    (["--acquisition", "ei"], ["--acquisition"]),
    (["--cap", "-1"], ["cap"]),
    (["--start", "0.5", "--stop", "0.6"], ["start", "stop"]),
    (["--initial", "99"], ["--initial"]),
    (["--diversity", "-1"], ["--diversity"]),
    (["--density-weight", "nan"], ["--density-weight"]),
    (["--targets", "train"], ["--targets", "dev", "test"]),
    (["--objective", "lab.py:f", "--targets", "dev"], ["--targets", "only --objective target"]),
    (["--cmaes-sigma", "0"], ["--cmaes-sigma"]),
    (["--turbo-length", "2"], ["--turbo-length", "1.6"]),
    (["--latent-scale", "-1"], ["--latent-scale"]),
    (["--oversample", "0"], ["--oversample"]),
])
def test_user_mistakes_are_one_line(cli, user_error, text_run, tmp_path, args, fragments):
    user_error(cli(["optimize", text_run, "--out", tmp_path / "x", "--budget", "8", *args]), *fragments)
    assert not (tmp_path / "x" / "search.jsonl").exists()
    assert not (tmp_path / "x" / "search.json").exists()  # a corrected rerun may use the folder


def test_sample_guide_moves_samples_up_the_guide(cli, text_run, tmp_path):
    guide = tmp_path / "guide.py"
    guide.write_text("def first(x):\n    return x[:, 0]\n")
    plain, steered = tmp_path / "plain.npy", tmp_path / "steered.npy"
    assert cli(["sample", text_run, "--n", "64", "--solver", "euler", "--out", plain]).exit_code == 0
    done = cli(["sample", text_run, "--n", "64", "--solver", "euler", "--out", steered, "--guide", f"{guide}:first",
                "--guide-strength", "20", "--guide-cap", "0"])
    assert done.exit_code == 0, done.output
    assert np.load(steered)[:, 0].mean() > np.load(plain)[:, 0].mean() + 0.5


@pytest.mark.parametrize("guide_body, extra, fragments", [
    ("def g(x):\n    return x[:, 0].detach()\n", [], ["--guide", "differentiabl"]),
    ("def g(x):\n    raise KeyError('oops')\n", [], ["--guide", "KeyError"]),
    ("def g(x):\n    return x\n", [], ["--guide", "shape"]),
    ("def g(x):\n    return x[:, 0]\n", ["--solver", "dopri5"], ["--guide", "fixed-step"]),
    ("def g(x):\n    return x[:, 0]\n", ["--guide-stop", "1.5"], ["stop"]),
])
def test_sample_guide_mistakes_are_one_line(cli, user_error, text_run, tmp_path, guide_body, extra, fragments):
    guide = tmp_path / "guide.py"
    guide.write_text(guide_body)
    out = tmp_path / "s.npy"
    user_error(cli(["sample", text_run, "--n", "8", "--out", out, "--guide", f"{guide}:g", *extra]), *fragments)
    assert not out.exists()


def test_category_objective_on_the_builtin_data(cli, train_builtin, tmp_path):
    """`--objective category`: a classifier trained on the held-out rows scores WordNet categories."""
    run = tmp_path / "builtin_run"
    train_builtin(run, held_out=300)
    out = tmp_path / "animal"
    done = cli(["optimize", run, "--objective", "category", "--category", "noun.animal", "--method", "random",
                "--budget", "8", "--batch", "4", "--seeds", "1", "--out", out])
    assert done.exit_code == 0, done.output
    records = _lines(out)
    assert len(records) == 8 and all(0.0 <= r["score"] <= 1.0 for r in records)
    assert records[0]["objective"] == "category[noun.animal]"
    problem = json.loads((out / "problem.json").read_text())
    assert problem["category"] == "noun.animal" and problem["classifier_accuracy"] > 0.3
    assert problem["category_rows_held_out"] > 10
    user_error = cli(["optimize", run, "--objective", "category", "--category", "noun.unicorn", "--out",
                      tmp_path / "x", "--budget", "8"])
    assert user_error.exit_code == 2 and "noun.unicorn" in user_error.output and "noun.animal" in user_error.output


def test_gp_fit_schedule_options_are_the_folders_settings(cli, user_error, text_run, tmp_path):
    out = tmp_path / "warm"
    done = cli(["optimize", text_run, "--out", out, "--method", "guided", "--seeds", "1", *FAST, "--refit-every", "2"])
    assert done.exit_code == 0, done.output
    settings = json.loads((out / "search.json").read_text())
    assert settings["gp_warm_start"] is True and settings["refit_every"] == 2  # warm by default
    assert settings["max_batch_cosine"] == 1.0  # no spread by default
    assert settings["diversity"] == 10.0 and settings["diversity_cosine"] == 0.5  # the hinge (row 0 free) by default
    assert len(_lines(out)) == 12
    # Resuming with cold fits would mix two searches in one folder.
    user_error(cli(["optimize", text_run, "--out", out, "--method", "guided", "--seeds", "1", *FAST,
                    "--refit-every", "2", "--no-gp-warm-start"]), "gp_warm_start differ")


def test_a_folder_from_before_the_warm_start_and_the_spread_resumes_as_it_began(cli, user_error, text_run, tmp_path):
    old, then = tmp_path / "old", tmp_path / "then"
    more = [a if a != "12" else "16" for a in FAST]
    # What the previous versions did (a diversity weight of 0 is the same in the mean and the hinge forms).
    before = ["--no-gp-warm-start", "--max-batch-cosine", "1", "--diversity", "0"]
    assert cli(["optimize", text_run, "--out", old, "--method", "guided", "--seeds", "1", *FAST, *before]).exit_code == 0
    settings = json.loads((old / "search.json").read_text())
    assert settings["diversity"] == 0 and settings["diversity_cosine"] == 0.5
    later = ("gp_warm_start", "max_batch_cosine", "diversity_cosine")
    for key in later:  # as the previous versions wrote it
        del settings[key]
    (old / "search.json").write_text(json.dumps(settings))
    done = cli(["optimize", text_run, "--out", old, "--method", "guided", "--seeds", "1", *more])
    assert done.exit_code == 0, done.output
    assert not set(later) & set(json.loads((old / "search.json").read_text()))
    for opposite in (["--gp-warm-start"], ["--max-batch-cosine", "0.5"], ["--diversity-cosine", "0.5"]):
        user_error(cli(["optimize", text_run, "--out", old, "--method", "guided", "--seeds", "1", *more, *opposite]),
                   "differ")
    assert cli(["optimize", text_run, "--out", then, "--method", "guided", "--seeds", "1", *more, *before]).exit_code == 0
    assert [r["embedding"] for r in _lines(old)] == [r["embedding"] for r in _lines(then)]


def test_no_filter_means_no_spread(cli, text_run, tmp_path):
    done = cli(["optimize", text_run, "--out", tmp_path / "s", "--method", "prior", "--seeds", "1", *FAST,
                "--oversample", "1"])
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "s" / "search.json").read_text())["max_batch_cosine"] == 1.0
