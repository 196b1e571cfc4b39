"""W&B for studies, not only single trainings: `scaleflow optimize --wandb` logs each (method, seed) as a run and
`scaleflow sweep --wandb` each finished trial, grouped by the folder's or sweep's name. Tested with a stand-in
`wandb` module (the extra is optional); without the extra, --wandb is refused in one line, nothing written."""
from __future__ import annotations

import sys
import types

import pytest


@pytest.fixture
def fake_wandb(monkeypatch):
    runs: list[dict] = []

    class Run:
        def __init__(self, **kwargs):
            self.record = {"init": kwargs, "logs": [], "summary": {}, "finished": False}
            self.summary = self.record["summary"]
            runs.append(self.record)

        def log(self, row, step=None):
            self.record["logs"].append((step, dict(row)))

        def finish(self):
            self.record["finished"] = True

    module = types.ModuleType("wandb")
    module.init = lambda **kwargs: Run(**kwargs)
    monkeypatch.setitem(sys.modules, "wandb", module)
    return runs


def test_optimize_logs_each_search_as_a_run(text_run, cli, tmp_path, fake_wandb):
    out = tmp_path / "mine"
    result = cli(["optimize", text_run, "--out", out, "--method", "guided,random", "--seeds", "2", "--budget", "12",
                  "--batch", "4", "--steps", "4", "--wandb", "--wandb-project", "lab"])
    assert result.exit_code == 0, result.output
    assert sorted(r["init"]["name"] for r in fake_wandb) == ["guided-seed0", "guided-seed1", "random-seed0",
                                                                "random-seed1"]
    for run in fake_wandb:
        init = run["init"]
        assert init["project"] == "lab" and init["group"] == "mine" and init["mode"] == "offline"
        assert init["config"]["budget"] == 12 and init["config"]["method"] in ("guided", "random")
        assert [step for step, _ in run["logs"]] == [4, 8, 12]  # best so far after each batch, by evaluations
        assert run["summary"]["evaluations"] == 12 and run["finished"]
    # A rerun scores nothing new: nothing is logged again.
    again = cli(["optimize", text_run, "--out", out, "--method", "guided,random", "--seeds", "2", "--budget", "12",
                 "--batch", "4", "--steps", "4", "--wandb", "--wandb-project", "lab"])
    assert again.exit_code == 0, again.output
    assert len(fake_wandb) == 4
    assert len({r["init"]["id"] for r in fake_wandb}) == 4


def test_options_that_would_do_nothing_are_refused(text_run, cli, user_error, tmp_path):
    user_error(cli(["optimize", text_run, "--out", tmp_path / "s", "--max-batch-cosine", "0.5", "--oversample", "1"]),
               "--max-batch-cosine", "--oversample 1")
    assert not (tmp_path / "s").exists()


def test_sweep_trials_are_logged_from_the_sweep_process(tmp_path, fake_wandb):
    from scaleflow.cli.sweep import _logging_to_wandb

    seen = []
    logged = _logging_to_wandb(lambda record, done, total: seen.append(record["id"]), "lab", "quick", tmp_path)
    record = {"id": "abc", "status": "ok", "config": {"arch": "mlp", "seed": 0},
              "result": {"params": 10, "metrics": {"fd": {"value": 60.0, "floor": 50.0}}}}
    logged(record, 1, 2)
    logged({"id": "bad", "status": "failed", "config": {"seed": 1}, "error": "x"}, 2, 2)
    assert seen == ["abc", "bad"]  # the progress bar still sees every trial
    (run,) = fake_wandb  # only the finished one is a W&B run
    assert run["init"]["group"] == "quick" and run["init"]["name"] == "abc"
    assert run["init"]["config"] == {"arch": "mlp", "seed": 0} and run["summary"]["fd"] == 60.0


def test_wandb_without_the_extra_is_refused_in_one_line(text_run, cli, user_error, tmp_path, block_imports):
    block_imports("wandb")
    user_error(cli(["optimize", text_run, "--out", tmp_path / "s", "--wandb"]), "--wandb", "scaleflow[wandb]")
    assert not (tmp_path / "s").exists()
    user_error(cli(["sweep", "configs/sweeps/quick.yaml", "--out", tmp_path / "w", "--wandb"]), "scaleflow[wandb]")
    assert not (tmp_path / "w").exists()
