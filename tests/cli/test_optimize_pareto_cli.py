"""`scaleflow optimize` with several objectives (`--objective` repeated, or `two-category`) as users type it."""
import json

import pytest

LAB = ("def near(x, texts=None):\n    return -((x - 5.0) ** 2).sum(-1)\n"
       "def first(x, texts=None):\n    return x[:, 0]\n")
FAST = ["--budget", "16", "--batch", "4", "--steps", "4", "--seeds", "2"]


def _records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "search.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    path = tmp_path_factory.mktemp("lab") / "lab.py"
    path.write_text(LAB)
    return path


def test_a_pareto_search_end_to_end_and_resumed(cli, text_run, lab, tmp_path):
    objectives = ["--objective", f"{lab}:near", "--objective", f"{lab}:first"]
    out = tmp_path / "pareto"
    done = cli(["optimize", text_run, *objectives, "--method", "guided,random", *FAST, "--out", out])
    assert done.exit_code == 0, done.output
    assert "hypervolume" in done.output and "pareto_front.png" in done.output
    records = _records(out)
    assert len(records) == 2 * 2 * 16 and all(len(r["scores"]) == 2 and len(r["ref_point"]) == 2 for r in records)
    assert records[0]["objective"] == f"{lab}:near & {lab}:first"
    settings = json.loads((out / "search.json").read_text())
    assert settings["objective"] == [f"{lab}:near", f"{lab}:first"] and settings["acquisition"] == "qlognehvi"
    assert (settings["restart_share"], settings["restart_time"]) == (0.5, 0.5)  # restarts: on with several
    summary = json.loads((out / "summary.json").read_text())
    rows = {m["method"]: m for m in summary["methods"]}
    assert all(m["hypervolume"] is not None and m["hypervolume"] >= 0 for m in rows.values())
    assert set(rows["random"]) >= {"guided_hypervolume_lead", "guided_hypervolume_lead_interval"}
    assert set(summary["pareto"]["ref_point_of_seed"]) == {"0", "1"}
    assert (out / "figures" / "pareto_front.png").stat().st_size > 10_000

    # Stopped after 8 evaluations and resumed to 16: the records of the uninterrupted search (guided, seed 0).
    resumed = tmp_path / "resumed"
    for budget in ("8", "16"):
        done = cli(["optimize", text_run, *objectives, "--method", "guided", "--batch", "4", "--steps", "4",
                    "--seeds", "1", "--budget", budget, "--out", resumed])
        assert done.exit_code == 0, done.output
    same = ("method", "seed", "step", "index", "score", "scores", "ref_point", "embedding", "valid", "novel")
    key = lambda r: (r["method"], r["seed"], r["index"])  # noqa: E731
    first = [r for r in records if r["method"] == "guided" and r["seed"] == 0]
    assert len(first) == 16
    assert ([{k: r[k] for k in same} for r in sorted(_records(resumed), key=key)]
            == [{k: r[k] for k in same} for r in sorted(first, key=key)])


def test_a_fixed_reference_point(cli, text_run, lab, tmp_path):
    out = tmp_path / "fixed"
    done = cli(["optimize", text_run, "--objective", f"{lab}:near", "--objective", f"{lab}:first", "--ref-point",
                "-100,0", "--method", "random", "--budget", "8", "--batch", "4", "--seeds", "1", "--out", out])
    assert done.exit_code == 0, done.output
    assert {tuple(r["ref_point"]) for r in _records(out)} == {(-100.0, 0.0)}
    assert json.loads((out / "search.json").read_text())["ref_point"] == [-100.0, 0.0]


@pytest.mark.parametrize("extra, fragments", [
    (["--objective", "two-category", "--objective", "LAB:near"], ["--objective two-category", "combined"]),
    (["--objective", "LAB:near"] * 2, ["--objective", "given twice"]),
    (["--objective", "LAB:near", "--objective", "LAB:first", "--objective", "LAB:a", "--objective", "LAB:b",
      "--objective", "LAB:c"], ["--objective given 5 times", "at most 4"]),
    (["--objective", "LAB:near", "--ref-point", "0,0"], ["--ref-point", "2 or more"]),
    (["--objective", "LAB:near", "--objective", "LAB:first", "--ref-point", "0"], ["--ref-point '0'", "2 finite"]),
    (["--objective", "LAB:near", "--acquisition", "qlognehvi"], ["--acquisition qlognehvi", "several objectives"]),
    (["--objective", "LAB:near", "--objective", "LAB:nothing"], ["--objective", "no function 'nothing'"]),
    (["--objective", "LAB:near", "--objective", "LAB:first", "--restart-share", "1"], ["--restart-share", "[0, 1)"]),
    (["--objective", "LAB:near", "--restart-time", "0"], ["--restart-time", "(0, 1)"]),
    (["--objective", "LAB:near", "--objective", "LAB:first", "--acquisition", "thompson", "--restart-share", "0.5"],
     ["--restart-share 0.5", "thompson"]),
])
def test_pareto_mistakes_are_one_line(cli, user_error, text_run, lab, tmp_path, extra, fragments):
    args = [a.replace("LAB", str(lab)) for a in extra]
    user_error(cli(["optimize", text_run, *args, "--budget", "8", "--out", tmp_path / "x"]), *fragments)


def test_two_category_on_the_builtin_data(cli, train_builtin, tmp_path):
    """`--objective two-category`: two WordNet categories' probabilities, reference point (0, 0), dev/test pairs."""
    run = tmp_path / "builtin_run"
    train_builtin(run, held_out=900)
    out = tmp_path / "pairs"
    done = cli(["optimize", run, "--objective", "two-category", "--targets", "dev", "--method", "random",
                "--budget", "8", "--batch", "4", "--seeds", "0,6", "--out", out])
    assert done.exit_code == 0, done.output
    problem = json.loads((out / "problem.json").read_text())
    assert problem["pair_set"] == "dev" and len(problem["pairs"]) == 5
    assert problem["pair_of_seed"]["6"] == problem["pairs"][1]["pair"]  # seed i takes pair i % 5
    for facts in problem["pairs"]:
        assert 0 <= facts["best_held_out_min_probability"] <= 0.5  # a softmax: p_a + p_b <= 1
        assert 0 <= facts["held_out_hypervolume"] <= 0.5
        diverse = facts["held_out_4_diverse_min_probability"]  # None where no 4 different held-out rows exist
        assert diverse is None or 0 <= diverse <= facts["best_held_out_min_probability"]
    records = _records(out)
    assert all(r["ref_point"] == [0.0, 0.0] and r["score"] == pytest.approx(min(r["scores"])) for r in records)
    a, b = problem["pairs"][0]["pair"]
    assert records[0]["objective"] == f"category[{a}] & category[{b}]"
    from scaleflow.search.category import category_pairs

    pairs = category_pairs()
    assert not {tuple(p) for p in pairs["dev"]} & {tuple(p) for p in pairs["test"]}
    assert len(pairs["test"]) == 10


def test_a_pareto_folder_from_before_restarts_resumes_without_them(cli, user_error, text_run, lab, tmp_path):
    objectives = ["--objective", f"{lab}:near", "--objective", f"{lab}:first"]
    fast = ["--method", "guided", "--batch", "4", "--steps", "4", "--seeds", "1"]
    old, then = tmp_path / "old", tmp_path / "then"
    assert cli(["optimize", text_run, *objectives, *fast, "--budget", "8", "--restart-share", "0",
                "--out", old]).exit_code == 0
    settings = json.loads((old / "search.json").read_text())
    del settings["restart_share"], settings["restart_time"]  # as the previous version wrote it
    (old / "search.json").write_text(json.dumps(settings))
    done = cli(["optimize", text_run, *objectives, *fast, "--budget", "16", "--out", old])
    assert done.exit_code == 0, done.output
    user_error(cli(["optimize", text_run, *objectives, *fast, "--budget", "16", "--restart-share", "0.5",
                    "--out", old]), "differ")
    assert cli(["optimize", text_run, *objectives, *fast, "--budget", "16", "--restart-share", "0",
                "--out", then]).exit_code == 0
    assert [r["embedding"] for r in _records(old)] == [r["embedding"] for r in _records(then)]
    # And the default (restarts) proposes otherwise once something counts.
    now = tmp_path / "now"
    assert cli(["optimize", text_run, *objectives, *fast, "--budget", "16", "--out", now]).exit_code == 0
    assert [r["embedding"] for r in _records(now)] != [r["embedding"] for r in _records(then)]
