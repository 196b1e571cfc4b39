"""`scaleflow optimize --constraint` and `--min-log-density` as users type them."""
import json


def test_constraint_flags(text_run, cli, user_error, tmp_path):
    lab = tmp_path / "lab.py"
    lab.write_text("def score(x, texts=None):\n    return -((x - 5.0) ** 2).sum(-1)\n"
                   "def size(x, texts=None):\n    return x.norm(dim=-1)\n")
    out = tmp_path / "search"
    result = cli(["optimize", text_run, "--objective", f"{lab}:score", "--method", "prior", "--seeds", "1",
                  "--budget", "16", "--constraint", f"{lab}:size<=1e9", "--min-log-density", "-1e9", "--out", out])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "search.jsonl").read_text().splitlines()]
    assert all(len(r["constraint_values"]) == 1 and r["constraints_ok"] and r["log_density_ok"] for r in records)
    settings = json.loads((out / "search.json").read_text())
    assert settings["constraints"] == [f"{lab}:size<=1e9"] and settings["min_log_density"] == -1e9
    user_error(cli(["optimize", text_run, "--objective", f"{lab}:score", "--constraint", f"{lab}:size", "--out",
                    tmp_path / "x"]), "--constraint", "MODULE:FUNCTION>=VALUE")
    user_error(cli(["optimize", text_run, "--objective", f"{lab}:score", "--constraint", f"{lab}:nothing>=1", "--out",
                    tmp_path / "y"]), "--constraint", "no function 'nothing'")
