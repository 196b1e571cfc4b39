"""What a researcher checks first: the version, `python -m scaleflow`, the project files, and a clear refusal
of Muon on a torch without it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import scaleflow
from scaleflow.training.config import ConfigError, make_config

ROOT = Path(__file__).resolve().parents[1]


def test_version_from_the_command_line_and_python_m():
    out = subprocess.run([sys.executable, "-m", "scaleflow", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"scaleflow {scaleflow.__version__}"
    from typer.testing import CliRunner

    from scaleflow.cli.main import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"scaleflow {scaleflow.__version__}"


def test_project_files_agree():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'license = "MIT"' in pyproject and (ROOT / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(citation["version"]) == scaleflow.__version__ and citation["license"] == "MIT"
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
    assert (ROOT / "src" / "scaleflow" / "py.typed").exists()


def test_muon_on_a_torch_without_it_is_refused_in_one_line(monkeypatch):
    monkeypatch.delattr(torch.optim, "Muon", raising=False)
    monkeypatch.setattr(torch, "__version__", "2.8.0")
    with pytest.raises(ConfigError) as err:
        make_config({"optimizer": "muon"})
    message = str(err.value)
    assert "\n" not in message and "muon needs torch >= 2.9" in message and "this is torch 2.8.0" in message
    make_config({"optimizer": "adamw"})  # the others are unaffected
    from scaleflow.sweeps.tasks import check_trial

    with pytest.raises(ConfigError, match="muon needs torch >= 2.9"):
        check_trial({"optimizer": "muon"}, task="vit")
