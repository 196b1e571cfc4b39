"""`scaleflow sweep` end to end, as users type it (the console script): a sweep YAML with worker
processes, every output written, a rerun that trains nothing, `sweep summarize`, and one-line errors."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scaleflow.sweeps import expand, load_sweep
from scaleflow.sweeps.tasks import check_trial

from lock_holder import held_by_another_process


ROOT = Path(__file__).resolve().parents[2]


def _scaleflow(*args, cwd=None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "scaleflow"
    if not script.exists():
        pytest.skip("the scaleflow console script is not installed next to this interpreter (pip install -e .)")
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("SCALEFLOW_DEBUG", None)
    return subprocess.run([str(script), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)


def _one_error_line(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory, make_data):
    folder = tmp_path_factory.mktemp("sweep")
    data, _ = make_data(folder / "data", texts=False)
    spec = {
        "name": "tiny", "axes": {"lr": [0.001, 0.01]}, "seeds": [0, 1],
        "fixed": {"data": str(data), "arch": "mlp", "scale": "tiny", "model": {"hidden_dim": 16}, "steps": 20,
                  "val_every": 10, "n_val": 50, "n_test": 50, "batch_size": 32, "bootstrap": 5, "sample_steps": 4},
    }
    spec_file = folder / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    out = folder / "out dir"
    done = _scaleflow("sweep", spec_file, "--out", out, "--jobs", "2", "--threads", "1")
    assert done.returncode == 0, done.stderr
    return spec_file, out, done


def test_sweep_writes_every_output(sweep_run):
    _, out, done = sweep_run
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert {(r["config"]["lr"], r["config"]["seed"]) for r in records} == {(0.001, 0), (0.001, 1), (0.01, 0), (0.01, 1)}
    assert all(r["peak_rss_mb"] > 10 and r["result"]["timing"]["threads"] == 1 for r in records)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4 and {"fd_ratio", "precision_ratio", "recall_ratio", "worst_ratio", "params"} <= set(rows[0])
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["measures_vs_lr.png", "measures_vs_params.png", "precision_vs_recall.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "worst_ratio" and summary["varied"] == ["lr"] and summary["n_trials"] == 4
    assert {s["setting"] for s in summary["settings"]} == {"lr=0.001", "lr=0.01"}
    assert all(s["n"] == 2 and s["ci"] is not None for s in summary["settings"])  # two seeds: an interval
    assert "lr=0.001" in done.stdout and "lr=0.01" in done.stdout and "4 trials (0 failed)" in done.stdout
    assert "best on worst_ratio is lr=" in done.stdout
    assert "2 at a time x 1 threads" in done.stderr  # as asked; the default is one per core


def test_rerun_trains_nothing_and_records_nothing_new(sweep_run):
    spec_file, out, _ = sweep_run
    before = (out / "results.jsonl").read_text()
    done = _scaleflow("sweep", spec_file, "--out", out)
    assert done.returncode == 0, done.stderr
    assert (out / "results.jsonl").read_text() == before
    assert "4 trials (0 failed)" in done.stdout


def test_summarize_redraws_on_another_metric(sweep_run, cli):
    _, out, _ = sweep_run
    (out / "results.csv").unlink()
    done = _scaleflow("sweep", "summarize", out, "--metric", "fd")
    assert done.returncode == 0, done.stderr
    assert (out / "results.csv").exists() and "ranked by fd" in done.stdout.replace("\n", " ")
    assert json.loads((out / "summary.json").read_text())["metric"] == "fd"
    # results.parquet: the same rows as results.csv, with typed columns
    import pyarrow.parquet as pq

    table = pq.read_table(out / "results.parquet")
    assert table.num_rows == len((out / "results.csv").read_text().splitlines()) - 1
    assert str(table.schema.field("worst_ratio").type) == "double" and str(table.schema.field("seed").type) == "int64"
    assert str(table.schema.field("status").type) == "string"
    assert any(name.startswith("reference.") and name.endswith("_ratio") for name in table.column_names)
    helped = cli(["sweep", "summarize", "--help"])
    assert helped.exit_code == 0 and "Usage: scaleflow sweep summarize" in " ".join(helped.stdout.split())


def test_a_second_sweep_evaluates_the_runs_it_shares(sweep_run, tmp_path):
    spec_file, out, _ = sweep_run
    spec = yaml.safe_load(spec_file.read_text())
    spec.update(name="cooler", axes={"lr": [0.001], "noise_scale": [0.9]}, seeds=[1])
    second = tmp_path / "cooler.yaml"
    second.write_text(yaml.safe_dump(spec))
    before = sorted((out / "runs").iterdir())
    done = _scaleflow("sweep", second, "--out", tmp_path / "cooler", "--runs", out / "runs")
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(line) for line in (tmp_path / "cooler" / "results.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and record["result"]["timing"]["trained_here"] is False
    assert Path(record["result"]["run_dir"]).parent == (out / "runs").resolve()
    assert sorted((out / "runs").iterdir()) == before and record["result"]["eval_settings"]["noise_scale"] == 0.9


def test_flags_build_a_sweep_without_a_file(tmp_path, cli):
    done = cli(["sweep", "--axis", "arch=mlp,dit", "--set", "steps=50", "--seeds", "0,1", "--dry-run",
                "--out", tmp_path / "s"])
    assert done.exit_code == 0, done.output
    assert "4 trials ->" in done.stdout and "steps=50 arch=dit seed=1" in done.stdout


def test_user_mistakes_are_one_line(tmp_path, sweep_run, cli, user_error):
    spec_file, out, _ = sweep_run
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\naxes: {widht: [1, 2]}\n")
    # The console script's own error path once; the rest in process (the same code, no 4 s start each).
    _one_error_line(_scaleflow("sweep", bad), str(bad), "axes.widht: not an option of a train trial")
    bad.write_text("name: b\naxes: {lr: [0.001, -1.0]}\n")
    user_error(cli(["sweep", bad, "--dry-run"]), str(bad), "trial", "lr")
    user_error(cli(["sweep", "summarize", tmp_path]), "not a sweep folder")
    user_error(cli(["sweep", "summarize", out, "--metric", "bogus"]), "--metric 'bogus'", "fd_ratio")
    user_error(cli(["sweep"]), "give a sweep YAML file or at least one --axis")
    user_error(cli(["sweep", "--axis", "lr"]), "--axis 'lr': expected NAME=V1,V2")
    user_error(cli(["sweep", "--axis", "lr=1", "--seeds", "a,b"]), "--seeds 'a,b'")
    user_error(cli(["sweep", tmp_path / "missing.yaml"]), "missing.yaml", "not found")
    user_error(cli(["sweep", spec_file, "--out", out, "--jobs", "0"]), "--jobs")
    other = tmp_path / "other.yaml"
    other.write_text("name: other\naxes: {lr: [0.5]}\n")
    user_error(cli(["sweep", other, "--out", out]), "different sweep")


def test_a_busy_sweep_folder_is_refused_and_summarize_still_reads_it(sweep_run, cli, user_error):
    spec_file, out, _ = sweep_run
    before = (out / "results.jsonl").read_text()
    with held_by_another_process(out) as holder:
        user_error(cli(["sweep", spec_file, "--out", out, "--jobs", "1"]),
                   f"{out}: another sweep is writing this folder (pid {holder.pid} on ", "choose another --out")
        summarized = cli(["sweep", "summarize", out])  # only reads the records: no lock needed
        assert summarized.exit_code == 0, summarized.output
        assert "4 trials (0 failed)" in summarized.stdout
    assert (out / "results.jsonl").read_text() == before


SHIPPED = sorted(p.name for p in (ROOT / "configs" / "sweeps").glob("*.yaml"))


def test_every_shipped_sweep_is_tested():
    assert {"quick.yaml", "defaults-study.yaml", "vit-scale-quick.yaml", "vit-scale.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_sweeps_are_valid(name):
    path = ROOT / "configs" / "sweeps" / name
    spec = load_sweep(path)
    trials = expand(spec)
    assert trials
    for options in trials:
        if options.get("data") == "data/cifar-10-batches-py":  # the full scale study needs CIFAR-10 on disk
            options = {**options, "data": "digits"}
        check_trial(options, spec.task)


def test_vit_scale_sweeps_have_the_notes_shape():
    quick, full = (expand(load_sweep(ROOT / "configs" / "sweeps" / n)) for n in ("vit-scale-quick.yaml", "vit-scale.yaml"))
    assert {t["scale"] for t in quick} == {"tiny", "small", "medium"} and {t["epochs"] for t in quick} == {15}
    assert {t["scale"] for t in full} == {"tiny", "small", "medium", "large", "xl"} and {t["epochs"] for t in full} == {30}
    assert {t["optimizer"] for t in quick} == {t["optimizer"] for t in full} == {"sgd", "adamw", "muon"}


def test_vit_sweep_end_to_end_with_one_optimizer_set(tmp_path, cli, user_error):
    """`scaleflow sweep --task vit`, `--set optimizer=...` for one optimizer, `sweep summarize` redrawing it."""
    out = tmp_path / "vit"
    done = cli(["sweep", ROOT / "configs" / "sweeps" / "vit-scale-quick.yaml", "--set", "optimizer=muon",
                "--axis", "scale=tiny", "--set", "epochs=1", "--set", "batch_size=256", "--set", "checkpoints=0",
                "--seeds", "0", "--out", out, "--dry-run"])
    assert done.exit_code == 0, done.output
    assert "1 trials ->" in done.stdout and "optimizer=muon" in done.stdout
    done = _scaleflow("sweep", "--task", "vit", "--axis", "optimizer=adamw,sgd", "--set", "epochs=1",
                      "--set", "batch_size=256", "--set", "analysis_rows=64", "--seeds", "0,1", "--checkpoints", "2",
                      "--out", out)
    assert done.returncode == 0, done.stderr
    assert "ranked by test_acc" in done.stdout and "scale=tiny: best on test_acc" in done.stdout
    for question in ("1. Scale robustness:", "2. Rank scaling:", "3. Cost:", "4. Generalization:"):
        assert question in done.stdout, question
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["evolution.png", "scale_study.png"]
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert [c["step"] for c in record["result"]["checkpoints"]] == [2, 5]
    redraw = cli(["sweep", "summarize", out, "--metric", "gap_acc"])
    assert redraw.exit_code == 0 and "ranked by gap_acc" in redraw.stdout, redraw.output
    user_error(cli(["sweep", "summarize", out, "--metric", "fd_ratio"]), "--metric 'fd_ratio'", "test_acc")


def test_vit_sweep_mistakes_are_one_line(tmp_path, cli, user_error, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/cifar-10-batches-py here
    full = ROOT / "configs" / "sweeps" / "vit-scale.yaml"
    user_error(cli(["sweep", full, "--dry-run"]), "vit-scale.yaml", "data/cifar-10-batches-py", "nothing is downloaded")
    user_error(cli(["sweep", "--task", "vit", "--axis", "scale=tiny,huge", "--dry-run"]), "scale")
    user_error(cli(["sweep", "--task", "vit", "--axis", "flow=icfm", "--dry-run"]), "axes.flow: not an option of a vit trial")
    user_error(cli(["sweep", "--task", "vit", "--axis", "optimizer=sgd", "--metric", "worst_ratio", "--dry-run"]),
               "--metric 'worst_ratio'")
    user_error(cli(["sweep", "--task", "vit", "--axis", "optimizer=sgd", "--set", "patch_size=3", "--dry-run"]),
               "patch_size: 3 does not divide the 8-pixel images of digits")


def test_axis_values_are_yaml_lists_and_numbers(tmp_path, cli, user_error):
    done = cli(["sweep", "--axis", "lr=1e-3,3e-4", "--axis", "model={hidden_dim: 16},{hidden_dim: 32}", "--dry-run"])
    assert done.exit_code == 0, done.output
    assert "lr=0.001" in done.stdout and "lr=0.0003" in done.stdout and "{'hidden_dim': 16}" in done.stdout
    user_error(cli(["sweep", "--axis", "lr=[1,", "--dry-run"]), "--axis 'lr=[1,': not a YAML value")
    user_error(cli(["sweep", "--axis", "lr=1", "--metric", "bogus", "--dry-run"]), "--metric 'bogus'")
