"""The main job end to end: `make demo`'s own command (`scaleflow demo`, the console script), on the
built-in data, with fewer steps and resamples. Any break of train -> eval -> compare -> figures fails here."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo_recipe() -> list[str]:
    """The command lines of the Makefile's `demo` target."""
    text = (ROOT / "Makefile").read_text()
    block = re.search(r"^demo:.*\n((?:\t.*\n)+)", text, re.M)
    assert block, "the Makefile has no demo target"
    return [line.strip() for line in block.group(1).splitlines()]


def test_make_demo_runs_the_console_script():
    assert _demo_recipe() == ["$(BIN)/scaleflow demo"]


def _scaleflow() -> list[str]:
    """The installed console script next to this interpreter (what `$(BIN)/scaleflow` is)."""
    script = Path(sys.executable).parent / "scaleflow"
    if not script.exists():
        pytest.skip("the scaleflow console script is not installed next to this interpreter (pip install -e .)")
    return [str(script)]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run dir"  # a space: paths are quoted and handled everywhere
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("SCALEFLOW_DEBUG", None)
    # Fewer steps, resamples and reference priors than `make demo` (the GMM's EM at 10K rows is the slow one;
    # tests/reference covers it): the same command, the same path through it.
    result = subprocess.run(_scaleflow() + ["demo", "--out", str(out), "--steps", "100", "--bootstrap", "10",
                                            "--reference", "gaussian,kde"],
                            capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path_factory.mktemp("cwd"))
    return out, result


def test_demo_trains_evaluates_and_draws(demo_run):
    out, result = demo_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for name in ("curves.png", "metrics.png", "nfe.png", "map.png"):
        figure = out / "figures" / name
        assert figure.exists() and figure.stat().st_size > 10_000, name
    report = json.loads((out / "eval.json").read_text())
    fd, validity = report["fd"], report["validity"]
    assert fd["value"] > fd["floor"] > 0 and fd["excess"] > 0  # 100 steps: worse than real data
    assert 0.9 < validity["floor"] < 1.0 and 0.0 <= validity["value"] <= 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 100 and summary["best_val_loss"] < summary["baseline_val_loss"]
    # The evaluation table and the closing lines reach the user.
    assert "fd" in result.stdout and "precision" in result.stdout
    assert "Frechet distance" in result.stderr and "Validity" in result.stderr and str(out / "figures") in " ".join(result.stderr.split())
    # The reference priors' row beside the prior's, and the line saying which ranks higher.
    assert set(report["reference"]["priors"]) == {"gaussian", "kde"}
    assert {row["solver"] for row in report["nfe_curve"]} == {"euler", "heun"}  # the demo's curve
    assert "ref gaussian" in result.stdout or "ref kde" in result.stdout
    assert "reference priors on the same rows" in result.stderr



def test_a_demo_killed_before_its_first_checkpoint_runs_again(tmp_path, monkeypatch):
    """Re-running `scaleflow demo` continues it, also when it died before writing a checkpoint (the
    folder holds a config only); evaluation and figures are stubbed here, the main test covers them."""
    from importlib import resources

    import scaleflow.cli.demo as demo_module
    from scaleflow.cli.main import app
    from scaleflow.training import make_config, train
    from typer.testing import CliRunner

    out = tmp_path / "demo"

    class Killed(Exception):
        pass

    def kill(step):
        if step == 3:
            raise Killed

    with resources.as_file(demo_module.DEMO_CONFIG) as path:
        config = make_config({"steps": 10, "out": str(out)}, yaml_path=path)
    with pytest.raises(Killed):
        train(config, out, progress=False, on_step=kill)
    assert (out / "config.yaml").exists() and not (out / "checkpoints" / "last.pt").exists()

    report = {"fd": {"value": 2.0, "floor": 1.0}, "validity": {"value": 0.5, "floor": 0.95}}
    monkeypatch.setattr(demo_module, "evaluate_and_save", lambda *a, **k: report)
    monkeypatch.setattr(demo_module, "report_table", lambda *a, **k: "")
    monkeypatch.setattr(demo_module, "compare", lambda *a, **k: None)
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--steps", "10"])
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 10


@pytest.mark.parametrize("option", [["--reference", "gmm,nope"], ["--nfe-solvers", "euler,nope"]])
def test_demo_options_are_checked_before_training(option, tmp_path, user_error):
    from scaleflow.cli.main import app
    from typer.testing import CliRunner

    out = tmp_path / "demo"
    user_error(CliRunner().invoke(app, ["demo", "--out", str(out), *option]), option[0], "nope")
    assert not out.exists()  # refused before a step was trained


def test_demo_trains_the_default_prior_of_scaleflow_train():
    """One default, chosen by the defaults study: `make demo` shows what `scaleflow train` trains."""
    from importlib import resources

    from scaleflow.cli import demo as demo_module
    from scaleflow.training.config import make_config

    with resources.as_file(demo_module.DEMO_CONFIG) as path:
        demo = make_config(yaml_path=path)
    default = make_config()
    assert demo.model_dump(exclude={"out"}) == default.model_dump(exclude={"out"})
    assert (default.arch, default.scale, default.prediction) == ("dit", "small", "x1")
