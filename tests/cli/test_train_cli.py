"""`scaleflow train` (and `scaleflow reflow`) end to end on tiny data: the run folder, --config with
overrides, --resume, refusals, and the one-line error contract for every bad input."""
from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from scaleflow.training.config import make_config
from scaleflow.training.run import train as train_run

RUN_FILES = ("config.yaml", "model.json", "splits.json", "normalization.safetensors", "model.safetensors",
             "ema.safetensors", "checkpoints/last.pt", "metrics.jsonl", "summary.json")


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --------------------------------------------------------------------------- a successful run


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, cli, tiny, data_files):
    """One run trained by this module through the CLI: (run folder, Result)."""
    data, texts = data_files
    out = tmp_path_factory.mktemp("train") / "run"
    result = cli(["train", "--data", data, "--texts", texts, *tiny, "--checkpoint-every", "10", "--out", out])
    return out, result


def test_train_writes_the_run_folder(cli_run, data_files):
    out, result = cli_run
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "error:" not in result.output
    for name in RUN_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not [p for p in out.rglob("*.tmp")], "temporary files left behind"
    assert f"run folder: {out}" in result.stderr  # tells the user where the run is
    assert "mlp/tiny" in result.stderr and "icfm" in result.stderr

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["arch"] == "mlp" and config["scale"] == "tiny" and config["steps"] == 20
    assert config["model"] == {"hidden_dim": 16}
    assert config["data"] == str(data_files[0]) and config["texts"] == str(data_files[1])
    info = json.loads((out / "model.json").read_text())
    assert info["input_dim"] == 8 and info["config"]["hidden_dim"] == 16 and info["arch"] == "mlp"
    splits = json.loads((out / "splits.json").read_text())
    assert len(splits["val"]) == 50 and len(splits["test"]) == 50 and len(splits["train"]) == 200
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["dim"] == 8 and summary["train_rows"] == 200
    assert np.isfinite(summary["best_val_loss"]) and summary["params"] == info["params"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [10, 20]


def test_training_again_into_a_run_is_refused(cli_run, cli, user_error, tiny, data_files):
    out, _ = cli_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    result = cli(["train", "--data", data_files[0], *tiny, "--out", out])
    user_error(result, str(out), "--resume")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing rewritten


def test_resume_of_a_completed_run_just_finishes(cli_run, cli, tmp_path):
    source, _ = cli_run
    out = tmp_path / "copy"
    shutil.copytree(source, out)
    (out / "config.yaml").write_text((out / "config.yaml").read_text().replace(str(source), str(out)))
    metrics = (out / "metrics.jsonl").read_text()
    result = cli(["train", "--resume", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 20
    assert (out / "metrics.jsonl").read_text() == metrics  # no extra steps were taken


def test_resume_continues_an_interrupted_run(cli_run, cli, tmp_path, data_files):
    """Stop a run after step 10 (checkpointed); `--resume` finishes it as if never stopped."""
    data, texts = data_files
    config = make_config(dict(data=str(data), texts=str(texts), arch="mlp", scale="tiny", prediction="velocity", model={"hidden_dim": 16},
                              steps=20, val_every=10, n_val=50, n_test=50, batch_size=32, checkpoint_every=10))

    class Interrupted(Exception):
        pass

    def stop_after_10(step: int) -> None:
        if step == 10:
            raise Interrupted

    out = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        train_run(config, out, progress=False, on_step=stop_after_10)
    assert (out / "checkpoints" / "last.pt").exists() and not (out / "summary.json").exists()

    result = cli(["train", "--resume", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 20
    vals = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
            if "val_loss" in json.loads(line)]
    assert vals == [10, 20]
    # resumed == uninterrupted (same config; checkpoint_every does not change the numbers)
    full = json.loads((cli_run[0] / "summary.json").read_text())
    assert summary["best_val_loss"] == pytest.approx(full["best_val_loss"], rel=1e-5)
    assert summary["final_val_loss"] == pytest.approx(full["final_val_loss"], rel=1e-5)


def test_resume_with_other_options_is_refused(cli_run, cli, user_error):
    out, _ = cli_run
    result = cli(["train", "--resume", "--out", out, "--steps", "30", "--lr", "0.1"])
    user_error(result, "--resume", "--steps", "--lr")
    assert json.loads((out / "summary.json").read_text())["steps"] == 20


def test_resume_refusal_names_model_opt(cli_run, cli, user_error):
    out, _ = cli_run
    user_error(cli(["train", "--resume", "--out", out, "--model-opt", "hidden_dim=16"]), "--model-opt")


def test_resume_refuses_config(cli_run, cli, tmp_path):
    out, _ = cli_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    result = cli(["train", "--resume", "--out", copy, "--config", tmp_path / "no_such.yaml", "--quiet"])
    assert result.exit_code == 2, result.output
    assert "--config" in result.output


def test_resume_needs_a_run(cli, user_error, tmp_path):
    user_error(cli(["train", "--resume"]), "--resume", "--out")
    user_error(cli(["train", "--resume", "--out", tmp_path / "nothing"]), "nothing to resume")
    assert not (tmp_path / "nothing").exists()


def test_config_file_with_cli_override(cli, tmp_path, data_files):
    data, _ = data_files
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "data": str(data), "arch": "mlp", "scale": "tiny", "model": {"hidden_dim": 16}, "steps": 10,
        "val_every": 5, "n_val": 50, "n_test": 50, "batch_size": 32, "seed": 3,
    }))
    out = tmp_path / "run"
    result = cli(["train", "--config", config, "--steps", "15", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["steps"] == 15  # the command line wins
    assert saved["val_every"] == 5 and saved["seed"] == 3 and saved["model"] == {"hidden_dim": 16}  # the file's
    assert json.loads((out / "summary.json").read_text())["steps"] == 15
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "val_loss" in json.loads(line)]
    assert steps == [5, 10, 15]


# --------------------------------------------------------------------------- bad inputs


def _bad_files(folder: Path, data: Path) -> dict[str, Path]:
    x = np.load(data)
    files = {}
    files["empty"] = folder / "empty.npy"
    files["empty"].write_bytes(b"")
    files["truncated"] = folder / "truncated.npy"
    raw = data.read_bytes()
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    files["one_d"] = folder / "one_d.npy"
    np.save(files["one_d"], x[:, 0])
    files["integer"] = folder / "integer.npy"
    np.save(files["integer"], np.rint(x).astype(np.int64))
    nan = x.copy()
    nan[[3, 17], 2] = np.nan
    files["nan"] = folder / "nan.npy"
    np.save(files["nan"], nan)
    files["bad_yaml"] = folder / "bad.yaml"
    files["bad_yaml"].write_text("steps: [1\n")
    files["unknown_key"] = folder / "unknown.yaml"
    files["unknown_key"].write_text("stepz: 5\n")
    files["short_texts"] = folder / "short.txt"
    files["short_texts"].write_text("one\ntwo\nthree\n")
    files["three_rows"] = folder / "three.npy"
    np.save(files["three_rows"], x[:3])
    files["bad_model"] = folder / "bad_model.yaml"
    files["bad_model"].write_text("model:\n  num_layers: 0\n")
    return files


# name -> (arguments replacing the default --data, fragments the error line must contain)
BAD_INPUTS = {
    "missing data file": (["--data", "{folder}/no_such.npy"], ["no_such.npy", "not found"]),
    "empty npy": (["--data", "{empty}"], ["empty.npy", "empty"]),
    "truncated npy": (["--data", "{truncated}"], ["truncated.npy", "truncated or corrupt"]),
    "1-D array": (["--data", "{one_d}"], ["one_d.npy", "2-D", "(300,)"]),
    "integer array": (["--data", "{integer}"], ["integer.npy", "int64", "floating point"]),
    "NaN rows": (["--data", "{nan}"], ["nan.npy", "NaN", "rows 3, 17"]),
    "too few rows": (["--data", "{data}", "--n-val", "200", "--n-test", "200"], ["300", "--n-val"]),
    "three rows": (["--data", "{three_rows}"], ["three.npy: has 3 rows but a run needs", ">= 16 rows", ">= 6 each"]),
    "held-out count below the minimum": (["--data", "{data}", "--n-test", "5"], ["n_test", "at least 6 rows", "got 5"]),
    "unknown arch": (["--data", "{data}", "--arch", "nope"], ["arch", "'nope'", "mlp"]),
    "unknown flow": (["--data", "{data}", "--flow", "nope"], ["flow", "'nope'", "icfm"]),
    "zero steps": (["--data", "{data}", "--steps", "0"], ["steps", "greater than 0"]),
    "bad yaml": (["--data", "{data}", "--config", "{bad_yaml}"], ["bad.yaml", "not valid YAML"]),
    "unknown yaml key": (["--data", "{data}", "--config", "{unknown_key}"], ["unknown.yaml", "stepz", "unknown option"]),
    "missing config": (["--data", "{data}", "--config", "{folder}/none.yaml"], ["none.yaml", "not found"]),
    "texts line count": (["--data", "{data}", "--texts", "{short_texts}"], ["300 rows", "3 texts"]),
    "model-opt without =": (["--data", "{data}", "--model-opt", "depth"], ["--model-opt", "'depth'", "KEY=VALUE"]),
    "unknown model option": (["--data", "{data}", "--model-opt", "depth=3"], ["depth", "mlp", "hidden_dim"]),
    "model-opt bad value": (["--data", "{data}", "--model-opt", "hidden_dim=abc"],
                            ["--model-opt", "hidden_dim=abc:", "hidden_dim must be positive integer(s); got 'abc'"]),
    "yaml model bad value": (["--data", "{data}", "--config", "{bad_model}"],
                             ["bad_model.yaml (model:):", "num_layers must be positive integer(s); got 0"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_nothing(case, cli, user_error, tiny, tmp_path, monkeypatch, data_files):
    """Exit 2, one `error:` line, no traceback, and no run folder or stray file (default --out: ./runs/...)."""
    files = {**{k: str(v) for k, v in _bad_files(tmp_path, data_files[0]).items()},
             "folder": str(tmp_path), "data": str(data_files[0])}
    args, fragments = BAD_INPUTS[case]
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    result = cli(["train", *tiny, *[a.format(**files) for a in args]])  # a later option wins
    user_error(result, *fragments)
    assert _snapshot(tmp_path) == before
    assert not [line for line in result.output.splitlines() if line.startswith("training ")]  # no header either


def test_bad_input_with_explicit_out_leaves_no_folder(cli, user_error, tiny, tmp_path, data_files):
    out = tmp_path / "never"
    user_error(cli(["train", "--data", data_files[0], *tiny, "--texts", tmp_path / "no.txt", "--out", out]), "no.txt")
    assert not out.exists()


# --------------------------------------------------------------------------- reflow


@pytest.fixture(scope="module")
def reflowed(tmp_path_factory, cli_run, cli):
    source, _ = cli_run
    out = tmp_path_factory.mktemp("reflow") / "new"
    result = cli(["reflow", source, "--out", out, "--n-pairs", "64", "--solver", "euler", "--solver-steps", "4",
                  "--steps", "10", "--quiet"])
    return source, out, result


def test_reflow_writes_a_new_run(reflowed):
    source, out, result = reflowed
    assert result.exit_code == 0, result.output
    assert f"reflowed run: {out}" in result.stderr
    for name in ("reflow_pairs.safetensors", "summary.json", "config.yaml", "model.json", "ema.safetensors"):
        assert (out / name).is_file(), name
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["flow"] == "reflow"
    assert Path(config["init_from"]) == source and Path(config["reflow_source"]) == source
    assert config["steps"] == 10 and config["arch"] == "mlp" and config["model"] == {"hidden_dim": 16}
    assert json.loads((out / "summary.json").read_text())["steps"] == 10
    from safetensors.numpy import load_file

    pairs = load_file(str(out / "reflow_pairs.safetensors"))
    assert pairs["x0"].shape == pairs["x1"].shape == (64, 8)
    assert pairs["val_x0"].shape == pairs["val_x1"].shape == (50, 8)  # as many as the source's validation rows
    assert json.loads((out / "summary.json").read_text())["val_on"] == "reflow pairs"


def test_reflow_into_an_existing_run_is_refused(reflowed, cli, user_error):
    source, out, _ = reflowed
    user_error(cli(["reflow", source, "--out", out, "--n-pairs", "16", "--solver", "euler", "--quiet"]),
               str(out), "already holds a run")


def test_reflow_of_a_folder_that_is_not_a_run(cli, user_error, tmp_path):
    user_error(cli(["reflow", tmp_path, "--out", tmp_path / "new", "--quiet"]), "not a scaleflow run folder")
    assert not (tmp_path / "new").exists()


def test_refused_reflow_leaves_no_folder(cli_run, cli, user_error, tmp_path):
    source, _ = cli_run
    out = tmp_path / "new"
    user_error(cli(["reflow", source, "--out", out, "--n-pairs", "16", "--solver", "euler", "--solver-steps", "2",
                    "--lr", "-1", "--quiet"]), "lr")
    assert not out.exists()


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_out_that_is_a_file(where, cli, user_error, tiny, tmp_path, data_files):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder\n")
    out = blocker if where == "file" else blocker / "run"
    user_error(cli(["train", "--data", data_files[0], *tiny, "--out", out]), "notes.txt")
    assert blocker.read_text() == "not a folder\n"


# --------------------------------------------------------------------------- folders in use, full disks, hints


def test_a_folder_another_process_trains_is_refused_and_left_alone(cli, user_error, tiny, tmp_path, data_files):
    import fcntl

    out = tmp_path / "busy"
    out.mkdir()
    (out / ".lock").write_text("pid 4242 on elsewhere since 2024-01-01 00:00:00\n")
    fd = os.open(out / ".lock", os.O_RDWR)  # another open file holding the flock: as another process would
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = _snapshot(out)
        result = cli(["train", "--data", data_files[0], *tiny, "--out", out])
        user_error(result, f"{out}: another training is writing this run folder (pid 4242 on elsewhere since "
                           "2024-01-01 00:00:00); wait for it to finish")
        assert _snapshot(out) == before and not result.output.startswith("training ")
    finally:
        os.close(fd)


def test_a_full_disk_is_one_line_and_the_run_resumes(cli, user_error, tiny, tmp_path, data_files, monkeypatch):
    import torch

    def full(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "run"
    monkeypatch.setattr(torch, "save", full)
    user_error(cli(["train", "--data", data_files[0], *tiny, "--out", out]),
               "checkpoints/last.pt: could not be written (No space left on device); no checkpoint had been written",
               f"scaleflow train --resume --out {out}")
    assert not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    result = cli(["train", "--resume", "--out", out, "--quiet"])  # no checkpoint yet: starts again from step 0
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 20


def test_hints_quote_paths_with_spaces(cli, tiny, tmp_path, data_files):
    out = tmp_path / "my runs" / "run 1"
    result = cli(["train", "--data", data_files[0], *tiny, "--out", out])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines.count(f"training mlp/tiny with icfm on {data_files[0]} -> {out}") == 1
    hint = next(line for line in lines if line.startswith("next: "))
    assert shlex.split(hint) == ["next:", "scaleflow", "sample", str(out), "--n", "1000", "--out", "samples.npy"]
    new = tmp_path / "my runs" / "re flowed"
    result = cli(["reflow", out, "--out", new, "--n-pairs", "16", "--solver", "euler", "--solver-steps", "2",
                  "--steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert shlex.split(result.stderr.splitlines()[-1].partition("next: ")[2]) == ["scaleflow", "eval", str(new)]


def test_scaleflow_train_takes_the_shipped_recipe_at_few_rows(tmp_path, cli):
    """End to end, as a user types it: 300 rows pick the shipped small-data recipe; what was given stays."""
    from scaleflow.training.recipes import SIZE_RECIPES

    rng = np.random.default_rng(0)
    data = tmp_path / "rows.npy"
    np.save(data, rng.standard_normal((300, 6)).astype(np.float32))
    result = cli(["train", "--data", data, "--arch", "mlp", "--steps", "4", "--val-every", "2", "--n-val", "40",
                     "--n-test", "40", "--batch-size", "32", "--out", tmp_path / "run", "--quiet"])
    assert result.exit_code == 0, result.output
    recipe = SIZE_RECIPES[0]  # the table's recipe with the Gaussian residual, which an mlp predicting x1 takes
    assert f"'{recipe.name}' recipe" in result.stderr and "kept as given: steps" in result.stderr
    assert "training mlp/tiny" in result.stderr  # the header says the network the recipe chose
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["recipe"]["set"] == {k: v for k, v in recipe.options.items() if k != "steps"}
    assert summary["steps"] == 4 and summary["selected_by"] == recipe.options["select_by"]
    model = json.loads((tmp_path / "run" / "model.json").read_text())
    assert model.get("residual", "none") == recipe.options.get("residual", "none")
    off = cli(["train", "--data", data, "--arch", "mlp", "--steps", "4", "--val-every", "2", "--n-val", "40",
                  "--n-test", "40", "--batch-size", "32", "--out", tmp_path / "off", "--quiet", "--recipe", "none"])
    assert off.exit_code == 0, off.output
    assert "recipe" not in json.loads((tmp_path / "off" / "summary.json").read_text())
    assert "training mlp/small" in off.stderr


@pytest.mark.parametrize("climbs", [False, True])
def test_a_residual_run_that_never_leaves_its_gaussian_says_so(tmp_path, cli, data_files, monkeypatch, climbs):
    """The samples of a Gaussian-residual run sit at the Gaussian's level until the network leaves it; weights chosen
    there are the Gaussian's, and `scaleflow train` says so (and records it) instead of reporting them as trained."""
    from scaleflow.training.trainer import Trainer

    scores = iter([0.20, 0.21, 0.22, 0.40] if climbs else [0.20, 0.21, 0.22, 0.21])
    monkeypatch.setattr(Trainer, "sample_score", lambda self, model: (next(scores), "coverage"))
    out = tmp_path / "run"
    result = cli(["train", "--data", data_files[0], "--arch", "mlp", "--scale", "tiny", "--residual", "gaussian",
                  "--select-by", "samples", "--recipe", "none", "--steps", "8", "--val-every", "2", "--n-val", "40",
                  "--n-test", "40", "--batch-size", "32", "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["left_the_gaussian"] is climbs and summary["gaussian_val_worst_ratio"] == 0.20
    assert ("warning: the network never left the Gaussian it adds to (validation worst ratio 0.200 at the first "
            "validation, 0.220 at the best)" in result.stderr) is not climbs
