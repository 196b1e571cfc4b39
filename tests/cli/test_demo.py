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
    result = subprocess.run(_scaleflow() + ["demo", "--out", str(out), "--steps", "100", "--bootstrap", "10"],
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

