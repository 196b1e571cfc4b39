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


def test_muon_on_a_torch_without_it_is_refused_in_one_line(monkeypatch, tmp_path):
    from scaleflow.training.run import train

    monkeypatch.delattr(torch.optim, "Muon", raising=False)
    monkeypatch.setattr(torch, "__version__", "2.8.0")
    config = make_config({"optimizer": "muon", "arch": "mlp", "scale": "tiny"})  # a Muon run's config still reads
    with pytest.raises(ConfigError) as err:
        train(config, tmp_path / "run", progress=False)
    message = str(err.value)
    assert "\n" not in message and "muon needs torch >= 2.9" in message and "this is torch 2.8.0" in message
    assert not (tmp_path / "run").exists()  # refused before anything is written
    from scaleflow.sweeps.tasks import check_trial

    with pytest.raises(ConfigError, match="muon needs torch >= 2.9"):
        check_trial({"optimizer": "muon"}, task="vit")


def test_platform_fallbacks_without_resource_or_sched_getaffinity(monkeypatch):
    """Windows has no `resource`, macOS no `os.sched_getaffinity` (and counts ru_maxrss in bytes): the CLI still
    imports, sweeps still size their jobs, and a trial's peak memory is None or in MiB."""
    import os

    from scaleflow.sweeps import environment

    assert environment.usable_cores() >= 1 and environment.peak_rss_mb() > 0  # Linux: affinity and KiB
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert environment.usable_cores() == 6
    from scaleflow.sweeps.local import threads_per_job

    assert threads_per_job(2) == 3
    import resource

    linux = environment.peak_rss_mb()
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(resource, "getrusage", lambda who: type("R", (), {"ru_maxrss": 512 * 2**20})())
    assert environment.peak_rss_mb() == 512.0  # bytes on macOS
    monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` fails, as on Windows
    assert environment.peak_rss_mb() is None
    assert linux is not None
    out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['resource'] = None; import os; "
                          "del os.sched_getaffinity; from scaleflow.cli.main import app; print('ok')"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-500:]
