"""`scaleflow optimize ask DIR` / `scaleflow optimize tell DIR FILE` as users run them: a round by hand."""
import csv
import json


def _ids(path):
    with open(path, newline="") as f:
        return [row["id"] for row in csv.DictReader(f)]


def test_rounds_by_hand(text_run, cli, user_error, tmp_path):
    folder, batch = tmp_path / "search", tmp_path / "batch.csv"
    result = cli(["optimize", "ask", folder, "--run", text_run, "--method", "prior", "--n", "4", "--out", batch])
    assert result.exit_code == 0, result.output
    ids = _ids(batch)
    assert ids == [f"s0-b0-{i}" for i in range(4)] and "optimize tell" in result.output
    settings = json.loads((folder / "search.json").read_text())
    assert settings["mode"] == "ask-tell" and settings["method"] == "prior" and settings["objective"] == "external"
    # Asking again before telling: the same batch.
    again = tmp_path / "again.jsonl"
    assert cli(["optimize", "ask", folder, "--out", again]).exit_code == 0
    assert [json.loads(line)["id"] for line in again.read_text().splitlines()] == ids
    assert len(json.loads(again.read_text().splitlines()[0])["embedding"]) == 8
    # Malformed or incomplete scores: one line, nothing recorded.
    bad = tmp_path / "bad.csv"
    bad.write_text("id,score\n" + "".join(f"{i},0.5\n" for i in ids[:3]))
    user_error(cli(["optimize", "tell", folder, bad]), "no score for s0-b0-3", "nothing was recorded")
    bad.write_text("id,score\n" + "".join(f"{i},nan\n" for i in ids))
    user_error(cli(["optimize", "tell", folder, bad]), "nan is not a finite number")
    bad.write_text("name,value\nx,1\n")
    user_error(cli(["optimize", "tell", folder, bad]), "columns id and score")
    bad.write_text("id,score\n" + "".join(f"{i},1\n" for i in ids + ids[:1]))
    user_error(cli(["optimize", "tell", folder, bad]), "appears twice")
    assert not (folder / "search.jsonl").exists() or (folder / "search.jsonl").read_text() == ""
    # The scores, then the next round.
    scores = tmp_path / "scores.csv"
    scores.write_text("id,score\n" + "".join(f"{i},{k / 10}\n" for k, i in enumerate(ids)))
    result = cli(["optimize", "tell", folder, scores])
    assert result.exit_code == 0, result.output
    assert "recorded 4 scores (batch 0)" in result.output and "best counted" in result.output
    records = [json.loads(line) for line in (folder / "search.jsonl").read_text().splitlines()]
    assert [r["score"] for r in records] == [0.0, 0.1, 0.2, 0.3] and {r["objective"] for r in records} == {"external"}
    user_error(cli(["optimize", "tell", folder, scores]), "no batch is pending")
    assert cli(["optimize", "ask", folder, "--n", "4", "--out", batch]).exit_code == 0
    assert _ids(batch) == [f"s0-b1-{i}" for i in range(4)]


def test_ask_refusals(text_run, cli, user_error, tmp_path):
    user_error(cli(["optimize", "ask", tmp_path / "new"]), "the first ask needs --run")
    assert not (tmp_path / "new").exists()
    assert cli(["optimize", "ask", tmp_path / "s", "--run", text_run, "--method", "prior", "--n", "2"]).exit_code == 0
    user_error(cli(["optimize", "ask", tmp_path / "s", "--method", "guided"]), "other settings (method differ")
    user_error(cli(["optimize", "ask", tmp_path / "s", "--out", tmp_path / "b.txt"]), "--out", ".csv or .jsonl")
    user_error(cli(["optimize", "tell", tmp_path / "none", tmp_path / "x.csv"]), "no ask/tell search here")
    # The GP schedule: warm by default; an opposite one given again is refused; a folder from before the warm
    # start (no key) reads as cold, so --no-gp-warm-start agrees with it and --gp-warm-start does not.
    settings = json.loads((tmp_path / "s" / "search.json").read_text())
    assert settings["gp_warm_start"] is True and settings["max_batch_cosine"] == 1.0
    assert settings["diversity"] == 10.0 and settings["diversity_cosine"] == 0.5  # the hinge, row 0 free
    user_error(cli(["optimize", "ask", tmp_path / "s", "--no-gp-warm-start"]), "other settings (gp_warm_start differ")
    del settings["gp_warm_start"], settings["max_batch_cosine"]
    (tmp_path / "s" / "search.json").write_text(json.dumps(settings))
    assert cli(["optimize", "ask", tmp_path / "s", "--no-gp-warm-start", "--max-batch-cosine", "1",
                "--n", "2"]).exit_code == 0
    user_error(cli(["optimize", "ask", tmp_path / "s", "--gp-warm-start"]), "other settings (gp_warm_start differ")
    user_error(cli(["optimize", "ask", tmp_path / "s", "--max-batch-cosine", "0.5"]),
               "other settings (max_batch_cosine differ")
    plain = tmp_path / "plain"
    assert cli(["optimize", "ask", plain, "--run", text_run, "--oversample", "1", "--n", "2"]).exit_code == 0
    assert json.loads((plain / "search.json").read_text())["max_batch_cosine"] == 1.0  # no filter, no spread
    help_text = cli(["optimize", "ask", "--help"])
    assert help_text.exit_code == 0 and "asking again before" in " ".join(help_text.output.split())


def test_constraints_measured_outside_are_told_as_columns(text_run, cli, user_error, tmp_path):
    folder, batch = tmp_path / "search", tmp_path / "batch.csv"
    user_error(cli(["optimize", "ask", folder, "--run", text_run, "--constraint", "my.py:tox<=0.2"]),
               "--constraint", "NAME>=VALUE")
    result = cli(["optimize", "ask", folder, "--run", text_run, "--method", "prior", "--n", "4", "--out", batch,
                  "--constraint", "toxicity<=0.2", "--constraint", "length>=3.0000001"])
    assert result.exit_code == 0, result.output
    assert "columns id, score, toxicity, length" in " ".join(result.output.split())
    # The bounds as given, every digit (a rounded bound would count other candidates than the loop's).
    assert json.loads((folder / "search.json").read_text())["constraints"] == ["toxicity<=0.2", "length>=3.0000001"]
    ids = _ids(batch)
    scores = tmp_path / "scores.csv"
    scores.write_text("id,score,toxicity\n" + "".join(f"{i},0.5,0.1\n" for i in ids))
    user_error(cli(["optimize", "tell", folder, scores]), "no value of the constraint length")
    scores.write_text("id,score,toxicity,length\n" + "".join(f"{i},0.5,0.1,x\n" for i in ids))
    user_error(cli(["optimize", "tell", folder, scores]), "length of s0-b0-0: 'x' is not a finite number")
    assert not (folder / "search.jsonl").exists() or (folder / "search.jsonl").read_text() == ""
    # Candidate 1 is too toxic, candidate 2 too short: neither counts, whatever it scored.
    rows = [(0.1, 0.1, 5), (0.9, 0.5, 5), (0.8, 0.0, 2), (0.2, 0.2, 3.1)]
    # A trailing comma on a row (a cell more than the header) is read as the header says.
    scores.write_text("id,score,toxicity,length\n" + "".join(f"{i},{s},{t},{n},\n" for i, (s, t, n) in zip(ids, rows)))
    assert cli(["optimize", "tell", folder, scores]).exit_code == 0
    records = [json.loads(line) for line in (folder / "search.jsonl").read_text().splitlines()]
    assert [r["constraint_values"] for r in records] == [[t, n] for _, t, n in rows]
    assert [r["constraints_ok"] for r in records] == [True, False, False, True]
    counted = [r["score"] for r in records if r["valid"] and r["novel"] and r["constraints_ok"]]
    assert records[-1]["best_so_far"] == (max(counted) if counted else None)
    jsonl = tmp_path / "scores.jsonl"
    assert cli(["optimize", "ask", folder, "--n", "4", "--out", batch]).exit_code == 0
    jsonl.write_text("".join(json.dumps({"id": i, "score": 0.3, "toxicity": 0.0, "length": 4}) + "\n"
                             for i in _ids(batch)))
    assert cli(["optimize", "tell", folder, jsonl]).exit_code == 0
