"""Transfer (`init_from`, `scaleflow train --init RUN`): a run starts from another prior's weights, keeps (or
refits) its normalization, records where it came from, resumes bit for bit, and refuses a source of another
network or dimension before writing anything."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from scaleflow.training import pretrained
from scaleflow.training.config import ConfigError, make_config
from scaleflow.training.run import load_run, train

from crash_helpers import Crash, crash_at, crash_resume_and_compare

OPTIONS = dict(arch="mlp", scale="tiny", model={"hidden_dim": 32}, steps=30, batch_size=32, val_every=10,
               checkpoint_every=10, log_every=5, n_val=40, n_test=40, warmup_steps=5, lr=1e-2, device="cpu")


def _rows(path: Path, n: int = 300, dim: int = 8, offset: float = 0.0, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    np.save(path, (rng.standard_normal((n, 3)) @ rng.standard_normal((3, dim)) + offset).astype(np.float32))
    return str(path)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("transfer")
    out = root / "source"
    train(make_config({**OPTIONS, "data": _rows(root / "a.npy")}), out, progress=False)
    return out


@pytest.fixture(scope="module")
def target_data(tmp_path_factory) -> str:
    return _rows(tmp_path_factory.mktemp("target") / "b.npy", offset=2.0, seed=1)


def test_transfer_starts_from_the_source_and_keeps_its_normalization(source, target_data, tmp_path):
    config = make_config({**OPTIONS, "data": target_data, "init_from": str(source), "steps": 1, "val_every": 1})
    summary = train(config, tmp_path / "ft", progress=False)
    assert summary["init_from"]["run"] == str(source.resolve()) and summary["init_from"]["normalization"] == "source"
    info = json.loads((tmp_path / "ft" / "model.json").read_text())
    assert info["init_from"] == summary["init_from"]
    saved, theirs = (load_file(str(folder / "normalization.safetensors")) for folder in (tmp_path / "ft", source))
    assert all(torch.equal(saved[k], theirs[k]) for k in saved)  # the source's statistics, not these rows'
    # The rows a transferred run evaluates on are in those coordinates: the original rows map back exactly.
    run = load_run(tmp_path / "ft")
    rows = np.load(target_data)
    data = run.data()
    back = run.standardizer.inverse_transform(data.train).numpy()
    assert np.allclose(back, rows[run.splits.train], atol=1e-4)


def test_refit_normalization_fits_the_new_rows(source, target_data, tmp_path):
    config = make_config({**OPTIONS, "data": target_data, "init_from": str(source), "init_normalization": "refit",
                          "steps": 1, "val_every": 1})
    train(config, tmp_path / "ft", progress=False)
    saved = load_file(str(tmp_path / "ft" / "normalization.safetensors"))
    rows = np.load(target_data)[load_run(tmp_path / "ft").splits.train]
    assert np.allclose(saved["mean"].numpy(), rows.mean(0), atol=1e-4)


def test_the_first_step_starts_from_the_source_weights(source, target_data, tmp_path):
    """With lr 0 nothing moves: the transferred run's weights are its source's."""
    config = make_config({**OPTIONS, "data": target_data, "init_from": str(source), "lr": 1e-12, "steps": 1,
                          "val_every": 1, "ema_decay": 0.0, "weight_decay": 0.0})
    train(config, tmp_path / "ft", progress=False)
    mine, theirs = load_file(str(tmp_path / "ft" / "model.safetensors")), load_file(str(source / "ema.safetensors"))
    assert all(torch.allclose(mine[k], theirs[k], atol=1e-6) for k in theirs)


@pytest.mark.parametrize("crash_step", [3, 23])  # before the first checkpoint (restarts from the source) and after
def test_fine_tuning_resumes_bit_for_bit(source, target_data, tmp_path, crash_step):
    config = make_config({**OPTIONS, "data": target_data, "init_from": str(source)})
    crash_resume_and_compare(config, tmp_path, crash_step)


@pytest.mark.parametrize("change, fragment", [
    ({"model": {"hidden_dim": 16}}, "holds a different mlp network (hidden_dim 32 vs 16)"),
    ({"arch": "dit", "scale": "tiny", "model": {}}, "holds mlp/tiny at 8-D; this run builds dit/tiny at 8-D"),
])
def test_a_source_of_another_network_is_refused_before_writing(source, target_data, tmp_path, change, fragment):
    config = make_config({**OPTIONS, "data": target_data, "init_from": str(source), **change})
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        train(config, tmp_path / "ft", progress=False)
    assert not (tmp_path / "ft").exists()


def test_a_source_of_another_dimension_is_refused(source, tmp_path):
    config = make_config({**OPTIONS, "data": _rows(tmp_path / "c.npy", dim=6), "init_from": str(source)})
    with pytest.raises(ConfigError, match="holds mlp/tiny at 8-D; this run builds mlp/tiny at 6-D"):
        train(config, tmp_path / "ft", progress=False)
    assert not (tmp_path / "ft").exists()


def test_init_builtin_pretrains_once_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setitem(pretrained.PRETRAIN_RECIPE, "steps", 2)
    data = _rows(tmp_path / "d.npy", dim=384)
    options = {**OPTIONS, "data": data, "init_from": "builtin", "steps": 1, "val_every": 1, "model": {"hidden_dim": 8}}
    first = train(make_config(options), tmp_path / "ft1", progress=False)
    folder = Path(first["init_from"]["run"])
    assert folder.parent.name == "pretrained" and json.loads((folder / "summary.json").read_text())["steps"] == 2
    assert json.loads((folder / "model.json").read_text())["data_source"].startswith("builtin")
    stamp = (folder / "summary.json").stat().st_mtime_ns
    second = train(make_config(options), tmp_path / "ft2", progress=False)
    assert second["init_from"]["run"] == str(folder) and (folder / "summary.json").stat().st_mtime_ns == stamp
    assert make_config(options).init_from == "builtin"


def test_a_fine_tuning_run_resumes_after_its_source_moved(source, target_data, tmp_path):
    """The weights come from the checkpoint and the statistics from the run's own folder: the source is not
    needed to resume (given by a relative path, too)."""
    import os
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(source, copy)
    config = make_config({**OPTIONS, "data": target_data, "init_from": "src"})
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(Crash):
            train(config, tmp_path / "ft", progress=False, on_step=crash_at(23))
    finally:
        os.chdir(here)
    assert json.loads((tmp_path / "ft" / "model.json").read_text())["init_from"]["run"] == str(copy.resolve())
    shutil.rmtree(copy)
    summary = train(make_config({**OPTIONS, "data": target_data, "init_from": str(copy)}), tmp_path / "ft",
                    resume=True, progress=False)
    assert summary["steps"] == 30 and summary["init_from"]["run"] == str(copy.resolve())


def test_init_builtin_refuses_another_dimension_before_pretraining(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "builtin_prior", lambda *a, **k: pytest.fail("pretrained before checking"))
    config = make_config({**OPTIONS, "data": _rows(tmp_path / "e.npy", dim=8), "init_from": "builtin"})
    with pytest.raises(ConfigError, match="384-D all-MiniLM-L6-v2 embeddings; this run's rows are 8-D"):
        train(config, tmp_path / "ft", progress=False)
    assert not (tmp_path / "ft").exists()


def test_a_gaussian_source_with_init_needs_refit():
    with pytest.raises(ConfigError, match="--init-normalization refit"):
        make_config({"source": "gaussian", "init_from": "runs/x"})
    assert make_config({"source": "gaussian", "init_from": "runs/x", "init_normalization": "refit"}).source == "gaussian"
