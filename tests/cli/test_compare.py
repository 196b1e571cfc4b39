import json

import numpy as np
import pytest
import torch
import typer
from rich.text import Text
from typer.testing import CliRunner

from scaleflow.cli.compare import _best, _cell, _rank_cells, compare
from scaleflow.training.config import make_config
from scaleflow.files import write_json, write_safetensors
from scaleflow.training.run import train

METRICS = ("val_loss", "reconstruction_mse", "fd", "mmd", "precision", "recall", "density", "coverage",
           "memorization", "diversity", "validity", "nearest_cosine", "straightness")
FIGURES = ("curves.png", "metrics.png", "nfe.png", "map.png")

app = typer.Typer()
app.command()(compare)
runner = CliRunner()


def _eval_report(seed: int) -> dict:
    """A synthetic eval.json in the format `evaluation.evaluate.evaluate` writes."""
    rng = np.random.default_rng(seed)
    report = {}
    for name in METRICS:
        value = float(rng.uniform(0.1, 1))
        floor = None if name in ("val_loss", "reconstruction_mse", "straightness") else value / 2
        report[name] = {"value": value, "ci": [0.9 * value, 1.1 * value], "floor": floor,
                        "floor_ci": None if floor is None else [0.8 * floor, 1.2 * floor]}
    fd = report["fd"]
    fd.update(excess=fd["value"] - fd["floor"], excess_ci=[0.0, fd["value"]], fd_inf=0.3 * fd["value"], floor_inf=0.01)
    report["nfe_curve"] = [{"solver": "euler", "steps": s, "nfe": s, "fd": 5.0 / s, "seconds": 0.01} for s in (1, 2, 4)]
    report["nfe_curve"].append({"solver": "dopri5", "steps": None, "nfe": 26, "fd": 1.1, "seconds": 0.1})
    report["stats"], report["settings"] = {"generated_vs_test": {}}, {"n_generated": 50, "seed": seed}
    return report


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny trained runs on one 300 x 8 file, both evaluated (synthetic eval files), and one not."""
    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(0)
    data = root / "data.npy"
    np.save(data, (rng.standard_normal((300, 3)) @ rng.standard_normal((3, 8))).astype(np.float32))
    base = dict(data=str(data), arch="mlp", scale="tiny", model={"hidden_dim": 16}, steps=20, batch_size=32,
                val_every=10, log_every=5, n_val=50, n_test=50)
    paths = {}
    for i, name in enumerate(("run_a", "run_b", "run_c")):
        paths[name] = root / name
        train(make_config({**base, "seed": i}), paths[name], progress=False)
    for i, name in enumerate(("run_a", "run_b")):
        write_json(paths[name] / "eval.json", _eval_report(i))
        write_safetensors(paths[name] / "eval_samples.safetensors", {"generated": torch.randn(50, 8)})
    return paths


def test_compare_two_evaluated_runs(runs, tmp_path):
    out = tmp_path / "figs"
    result = runner.invoke(app, [str(runs["run_a"]), str(runs["run_b"]), "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("run_a", "run_b", "fd", "fd_excess", "fd_inf", "validity", "nearest_cosine", "coverage", "arch", "mlp",
                 "best_val_loss", "(floor", "worst_ratio", "novelty_ratio", "Reading FD", "only by their intervals"):
        assert text in result.stdout, text
    for name in FIGURES:
        assert (out / name).stat().st_size > 0, name
        assert f"wrote {out / name}" in result.stdout
    assert "note:" not in result.output


def test_single_run_writes_into_its_figures_folder(runs):
    result = runner.invoke(app, [str(runs["run_a"]), "--no-map", "--quiet"])
    assert result.exit_code == 0, result.output
    figures = runs["run_a"] / "figures"
    assert sorted(p.name for p in figures.iterdir()) == ["curves.png", "metrics.png", "nfe.png"]
    assert "coverage" not in result.stdout and "best_val_loss" not in result.stdout  # --quiet: no table


def test_run_without_eval_still_gets_curves(runs, tmp_path):
    out = tmp_path / "figs"
    result = runner.invoke(app, [str(runs["run_c"]), "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (out / "curves.png").exists()
    assert not (out / "metrics.png").exists() and not (out / "map.png").exists()
    assert "scaleflow eval" in result.stderr and "note:" in result.stderr


def test_mixed_runs_compare_what_they_have(runs, tmp_path):
    out = tmp_path / "figs"
    result = runner.invoke(app, [str(runs["run_a"]), str(runs["run_c"]), "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert all((out / name).exists() for name in FIGURES)
    assert "run_c: no eval.json" in result.stderr


def test_map_skipped_for_runs_of_different_dimensions(runs, tmp_path):
    other = tmp_path / "run_d"
    other.mkdir()
    for name in ("model.json", "summary.json", "metrics.jsonl"):
        (other / name).write_bytes((runs["run_b"] / name).read_bytes())
    info = json.loads((other / "model.json").read_text())
    write_json(other / "model.json", {**info, "input_dim": 16})
    out = tmp_path / "figs"
    result = runner.invoke(app, [str(runs["run_a"]), str(other), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not (out / "map.png").exists() and (out / "curves.png").exists()
    assert "map skipped" in result.stderr and "different dimensions" in result.stderr


def test_not_a_run_folder_is_a_one_line_error(runs, tmp_path):
    result = runner.invoke(app, [str(runs["run_a"]), str(tmp_path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "model.json" in lines[0] and str(tmp_path) in lines[0]


def test_folder_with_nothing_to_compare_is_an_error(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"arch": "mlp", "input_dim": 8}))
    result = runner.invoke(app, [str(tmp_path)])
    assert result.exit_code == 2 and "nothing to compare" in result.stderr


def test_map_skipped_when_the_data_file_is_gone(runs, tmp_path):
    moved = tmp_path / "run_a"
    moved.mkdir()
    for f in runs["run_a"].iterdir():
        if f.is_file():
            (moved / f.name).write_bytes(f.read_bytes())
    config = (moved / "config.yaml").read_text()
    (moved / "config.yaml").write_text(config.replace(str(runs["run_a"].parent / "data.npy"), str(tmp_path / "gone.npy")))
    out = tmp_path / "figs"
    result = runner.invoke(app, [str(moved), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "metrics.png").exists() and not (out / "map.png").exists()
    assert "map skipped: cannot read" in result.stderr


def _plain(markup: str) -> str:
    return Text.from_markup(markup).plain


def test_cells_show_both_intervals_and_no_ratio():
    cell = _cell({"value": 0.007, "ci": [0.006, 0.008], "floor": -0.0003, "floor_ci": [-0.001, 0.0005]})
    assert _plain(cell) == "0.007 [0.006, 0.008] (floor -0.0003 [-0.001, 0.0005])"
    assert "x" not in cell
    assert _plain(_cell({"value": 88.3, "ci": None, "floor": 0.9, "floor_ci": None})) == "88.3 (floor 0.9)"
    nan = float("nan")  # "[nan, nan]" would parse as a markup tag unless escaped
    assert _plain(_cell({"value": 1.0, "ci": [nan, nan], "floor": None})) == "1 [nan, nan]"
    assert _cell(None) == "-"


def test_best_run_by_direction():
    assert _best("validity", [0.5, 0.9, None]) == 1  # higher is better
    assert _best("fd_excess", [3.0, -0.5]) == 1 and _best("fd_inf", [2.0, 4.0]) == 0 and _best("mmd", [0.1, 0.0]) == 1
    assert _best("nearest_cosine", [0.5, 0.9]) is None  # judged against its floor: no direction
    assert _best("validity", [0.5]) is None
    # With intervals, only a best that no other run's interval reaches: FD_inf 2 [1, 3] vs 4 [2.5, 5.5] is a tie.
    assert _best("fd_inf", [2.0, 4.0], [[1.0, 3.0], [2.5, 5.5]]) is None
    assert _best("fd_inf", [2.0, 4.0], [[1.0, 3.0], [3.5, 4.5]]) == 0
    assert _best("fd_inf", [2.0, 4.0, 9.0], [[1.0, 3.0], None, [8.0, 10.0]]) == 0  # no interval: nothing to overlap


def test_rank_rows_show_the_worst_ratio_and_its_binding_measure():
    cells = _rank_cells([_eval_report(0), None])
    report = _eval_report(0)
    novelty = (1 - report["memorization"]["value"]) / (1 - report["memorization"]["floor"])
    # Every other term is value / floor = 2, so FD's term is floor / FD = 0.5, below novelty's 0.58: FD binds.
    assert novelty > 0.5
    assert cells == {"worst_ratio": ["0.5 (fd)", "-"], "novelty_ratio": [f"{novelty:.3g}", "-"]}
