"""scripts/small_data_figure.py: records of several sweep folders drawn as one figure, a line per prior; points with
fewer than 3 seeds and the recipe's controls are left out, and it says so."""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "small_data_figure.py"


def _record(config: dict, seed: int, fd: float) -> dict:
    entry = lambda value, floor: {"value": value, "ci": [value, value], "floor": floor}  # noqa: E731
    metrics = {"fd": entry(fd, 1.0), "precision": entry(0.8, 1.0), "recall": entry(0.7, 1.0),
               "coverage": entry(0.9, 1.0), "validity": entry(0.9, 1.0), "memorization": entry(0.0, 0.0)}
    return {"id": f"{seed}", "status": "ok", "config": {**config, "seed": seed},
            "result": {"params": 10, "train": {}, "metrics": metrics}}


def test_sizes_from_several_sweeps_make_one_figure(tmp_path, monkeypatch, capsys):
    folders = []
    for name, configs in {"a": [{"recipe": "none", "n_train": 1000}, {"recipe": "auto", "n_train": 1000},
                                {"recipe": "auto", "residual": "none", "n_train": 1000}],
                          "b": [{"recipe": "none", "n_train": 5000, "residual": "gaussian"},
                                {"recipe": "none", "n_train": 10000}]}.items():
        folder = tmp_path / name
        folder.mkdir()
        seeds = {5000: 2}  # the 5K recipe point has 2 seeds: left out
        lines = [json.dumps(_record(c, s, 2.0 if c["recipe"] == "none" else 1.5))
                 for c in configs for s in range(seeds.get(c["n_train"], 3))]
        (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
        folders.append(str(folder))
    out = tmp_path / "figure.png"
    monkeypatch.setattr(sys, "argv", ["small_data_figure.py", "--sweeps", *folders, "--out", str(out)])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    printed = capsys.readouterr().out
    assert "plain defaults, 1000 rows: 3 seeds" in printed and "plain defaults, 10000 rows: 3 seeds" in printed
    assert "small-data recipe (Gaussian residual), 1000 rows: 3 seeds" in printed
    assert "5000 rows: 2 seeds (left out: fewer than 3)" in printed
    assert "residual=none" not in printed and printed.count("1000 rows") == 2  # the control is no line
    assert out.stat().st_size > 10_000
