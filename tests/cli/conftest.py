"""Fixtures for the end-to-end CLI tests: small data sets, tiny trained runs shared per session,
and helpers that invoke `scaleflow` in-process and check the one-line user-error contract."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from typer.testing import CliRunner

from scaleflow.cli.main import app

N_ROWS, DIM = 300, 8
DATA_MEAN = 5.0  # far from 0, so un-normalized samples are told apart from normalized ones

# Tiny, fast training options shared by every trained run of these tests. Velocity prediction: the
# values these tests check (an under-trained run scores below the floors) assume it; x1 runs have their own tests.
TINY = ["--arch", "mlp", "--scale", "tiny", "--prediction", "velocity", "--model-opt", "hidden_dim=16", "--steps", "20",
        "--val-every", "10", "--n-val", "50", "--n-test", "50", "--batch-size", "32", "--quiet"]

# Wide console: Rich tables must not be truncated in the captured output.
ENV = {"COLUMNS": "200", "SCALEFLOW_DEBUG": None}

runner = CliRunner()


def write_data(folder: Path, n: int = N_ROWS, dim: int = DIM, texts: bool = True, seed: int = 0) -> tuple[Path, Path | None]:
    """A low-rank Gaussian `[n, dim]` float32 .npy offset to mean ~5, and a .txt with one text per row."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, 3)) @ rng.standard_normal((3, dim)) + DATA_MEAN).astype(np.float32)
    data = folder / "data.npy"
    np.save(data, x)
    text_file = None
    if texts:
        text_file = folder / "data.txt"
        text_file.write_text("".join(f"text number {i}\n" for i in range(n)), encoding="utf-8")
    return data, text_file


def invoke(args: list[str], **kwargs):
    """Run `scaleflow ARGS` in-process; returns typer's Result (stdout, stderr, output = both)."""
    return runner.invoke(app, [str(a) for a in args], env=ENV, **kwargs)


def check_user_error(result, *fragments: str) -> str:
    """Exit code 2, no traceback, exactly one `error:` line (on stderr) containing every fragment."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert lines[0] in result.stderr.splitlines(), "the error line belongs on stderr"
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="session")
def cli() -> Callable:
    return invoke


@pytest.fixture(scope="session")
def user_error() -> Callable:
    return check_user_error


@pytest.fixture(scope="session")
def data_files(tmp_path_factory) -> tuple[Path, Path]:
    """(data.npy [300, 8], data.txt with 300 lines), shared by the whole session; never modified."""
    data, texts = write_data(tmp_path_factory.mktemp("data"))
    return data, texts


def _train(folder: Path, data: Path, texts: Path | None, *extra: str) -> tuple[Path, object]:
    args = ["train", "--data", data, *(["--texts", texts] if texts else []), *TINY, "--out", folder, *extra]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    return folder, result


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, data_files) -> Path:
    """A tiny trained run (with texts). Tests may add eval files to it, but never retrain it."""
    data, texts = data_files
    return _train(tmp_path_factory.mktemp("runs") / "with_texts", data, texts)[0]


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory, data_files) -> Path:
    """A tiny trained run on the same rows, without texts, another seed."""
    data, _ = data_files
    return _train(tmp_path_factory.mktemp("runs") / "no_texts", data, None, "--seed", "1")[0]


@pytest.fixture
def block_imports(monkeypatch) -> Callable[..., None]:
    """`block_imports("sonar")`: make `import sonar` fail as if the package were not installed."""

    def block(*names: str) -> None:
        for name in list(sys.modules):
            if any(name == n or name.startswith(n + ".") for n in names):
                monkeypatch.delitem(sys.modules, name)
        for n in names:
            monkeypatch.setitem(sys.modules, n, None)

    return block


@pytest.fixture(scope="session")
def tiny() -> list[str]:
    """The tiny, fast `scaleflow train` options (a copy; safe to extend)."""
    return list(TINY)


@pytest.fixture(scope="session")
def make_data() -> Callable[..., tuple[Path, Path | None]]:
    """`make_data(folder, n=300, dim=8, texts=True, seed=0)` -> (data.npy, data.txt or None)."""
    return write_data


@pytest.fixture(scope="session")
def train_builtin(cli: Callable, tiny: list[str]) -> Callable[[Path, int], None]:
    """`train_builtin(run, held_out)`: a tiny run on 500 built-in rows with `held_out` validation and as many test
    rows (the category objectives' classifier trains on the held-out rows)."""

    def train(run: Path, held_out: int) -> None:
        options = [a for a in tiny if a not in ("--n-val", "--n-test", "50")]
        done = cli(["train", "--data", "builtin", "--n-train", "500", "--n-val", str(held_out), "--n-test",
                    str(held_out), *options, "--out", run])
        assert done.exit_code == 0, done.output

    return train
