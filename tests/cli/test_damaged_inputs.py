"""Damaged run folders and mistyped paths or values: one line naming the file or option, exit 2."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def damaged_copy(text_run, tmp_path):
    """A copy of the tiny trained run that a test may damage."""
    def copy() -> Path:
        folder = tmp_path / "run"
        shutil.copytree(text_run, folder)
        return folder
    return copy


@pytest.mark.parametrize("name, content, fragments", [
    ("ema.safetensors", b"", ("ema.safetensors: not a readable safetensors file",)),
    ("ema.safetensors", None, ("ema.safetensors: not a readable safetensors file",)),  # truncated
    ("normalization.safetensors", b"\x00" * 3, ("normalization.safetensors: not a readable safetensors file",)),
    ("model.json", b'{"arch": ', ("model.json: not a readable JSON file",)),
    ("model.json", b"[1, 2]", ("model.json: expected a JSON dict, found a list",)),
    ("splits.json", b'{"seed": 0}', ("splits.json", "missing")),
])
def test_sample_names_the_damaged_file(damaged_copy, cli, user_error, name, content, fragments, tmp_path):
    run = damaged_copy()
    target = run / name
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2] if content is None else content)
    out = tmp_path / "samples.npy"
    user_error(cli(["sample", run, "--n", "4", "--out", out]), *fragments)
    assert not out.exists()


def test_normalization_of_another_dimension_is_refused(damaged_copy, cli, user_error):
    from safetensors.torch import save_file
    import torch

    run = damaged_copy()
    save_file({"mean": torch.zeros(16), "std": torch.ones(16)}, str(run / "normalization.safetensors"))
    for command in (["sample", run, "--n", "4"], ["eval", run, "--n", "8", "--bootstrap", "2", "--no-nfe-curve"]):
        user_error(cli(command), "normalization.safetensors: expected mean and std of 8 values")


@pytest.mark.parametrize("content, fragment", [
    (b"", "last.pt: not a readable checkpoint"),
    (b"garbage bytes, not a zip", "last.pt: not a readable checkpoint"),
    (None, "last.pt: not a scaleflow checkpoint (no model"),  # a valid torch file without the keys
])
def test_resume_from_a_damaged_checkpoint_names_it(damaged_copy, cli, user_error, content, fragment):
    import torch

    run = damaged_copy()
    last = run / "checkpoints" / "last.pt"
    if content is None:
        torch.save({"state": {}}, last)
    else:
        last.write_bytes(content)
    user_error(cli(["train", "--resume", "--out", run]), fragment)


def test_bad_counts_and_tolerances(text_run, cli, user_error, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an accepted empty --out would write into the working folder
    user_error(cli(["reflow", text_run, "--out", tmp_path / "r", "--n-pairs", "0"]), "--n-pairs", ">= 16")
    user_error(cli(["reflow", text_run, "--out", tmp_path / "r", "--n-val-pairs", "5"]), "--n-val-pairs", ">= 6")
    user_error(cli(["reflow", text_run, "--out", ""]), "--out", "not an empty string")
    user_error(cli(["compare", text_run, "--out", ""]), "--out", "not an empty string")
    user_error(cli(["sample", text_run, "--solver", "dopri5", "--rtol", "inf"]), "finite rtol and atol")
    assert not (tmp_path / "r").exists()
    user_error(cli(["sample", text_run, "--solver", "dopri5", "--rtol", "0", "--atol", "0"]), "rtol and atol > 0")
    user_error(cli(["sample", text_run, "--neighbors", "-1"]), "--neighbors must be >= 0")


def test_compare_refuses_an_eval_json_that_is_not_a_report(damaged_copy, cli, user_error, tmp_path):
    run = damaged_copy()
    (run / "eval.json").write_text("[1, 2, 3]")
    user_error(cli(["compare", run, "--out", tmp_path / "figs"]), "eval.json: expected a JSON dict")
    assert not (tmp_path / "figs").exists()
    (run / "eval.json").write_text("{}")  # a report without metrics: curves still drawn, metrics skipped
    result = cli(["compare", run, "--out", tmp_path / "figs", "--no-map", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "metrics.png skipped" in result.output and (tmp_path / "figs" / "curves.png").exists()


def test_paths_that_cannot_be_used(text_run, damaged_copy, cli, user_error, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    user_error(cli(["sample", text_run, "--n", "4", "--out", blocker / "s.npy"]), f"{blocker} is a file, not a folder")
    folder = tmp_path / "looks.npy"
    folder.mkdir()
    user_error(cli(["sample", text_run, "--n", "4", "--out", folder]), "is a folder; give a file name")
    run = damaged_copy()
    (run / "eval.json").mkdir()  # eval's own output path taken by a folder
    user_error(cli(["eval", run, "--n", "8", "--bootstrap", "2", "--no-nfe-curve"]), "eval.json", "is a folder")
    user_error(cli(["train", "--data", tmp_path, "--out", tmp_path / "x"]), f"{tmp_path}: is a folder; give a file")
    user_error(cli(["train", "--config", tmp_path]), "is a folder, not a YAML config file")
    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    user_error(cli(["train", "--config", binary]), "c.yaml: not a text file")
    user_error(cli(["sample", tmp_path / "missing"]), "no such run folder")
    user_error(cli(["sample", text_run, "--n", "4", "--out", tmp_path / ("x" * 300 + ".npy")]), "name too long")


def test_the_console_script_prints_option_mistakes_in_one_line():
    # `main` (the installed command), not the in-process runner: click's usage panel becomes one line.
    done = subprocess.run([sys.executable, "-c", "from scaleflow.cli.main import main; main()", "train", "--steps", "five"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for '--steps'"), done.stderr
    assert lines[0].endswith("train --help`)")
