"""`scaleflow sample`, `scaleflow eval` and `scaleflow compare` on tiny trained runs."""
from __future__ import annotations

import json
import math
import re
import shutil
import stat

import numpy as np
import pytest

from scaleflow.data.loading import load_embeddings

METRICS = {"val_loss", "reconstruction_mse", "fd", "mmd", "precision", "recall", "density", "coverage",
           "memorization", "diversity", "validity", "nearest_cosine", "straightness"}
SHARES = {"precision", "recall", "coverage", "memorization", "validity"}  # values in [0, 1]
NO_FLOOR = {"val_loss", "reconstruction_mse", "straightness"}


# --------------------------------------------------------------------------- sample


@pytest.fixture(scope="module")
def npy_samples(text_run, cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples") / "s.npy"
    result = cli(["sample", text_run, "--n", "30", "--out", out])
    assert result.exit_code == 0, result.output
    return out, result


def test_sample_writes_original_space_npy(npy_samples, data_files):
    out, result = npy_samples
    assert f"wrote {out}" in result.stderr and "30 samples" in result.stderr
    samples = np.load(out)
    assert samples.shape == (30, 8) and samples.dtype == np.float32
    assert np.isfinite(samples).all()
    data = np.load(data_files[0])
    # un-normalized: centred near the data (mean ~5), not near 0 as the network's normalized space is
    gap = np.abs(samples.mean(0) - data.mean(0)) / data.std(0)
    assert gap.mean() < 1.0, gap
    assert (np.abs(samples.mean(0)) / data.std(0)).mean() > 2.0


@pytest.mark.parametrize("suffix", [".safetensors", ".parquet"])
def test_sample_other_formats_load_back(suffix, npy_samples, text_run, cli, tmp_path):
    out = tmp_path / f"s{suffix}"
    result = cli(["sample", text_run, "--n", "30", "--out", out])
    assert result.exit_code == 0, result.output
    loaded = load_embeddings(out)
    assert loaded.embeddings.shape == (30, 8) and loaded.embeddings.dtype == np.float32
    np.testing.assert_allclose(loaded.embeddings, np.load(npy_samples[0]), rtol=1e-6)  # same seed, same samples


def test_sample_safetensors_is_readable_like_other_outputs(text_run, cli, tmp_path):
    for suffix in (".npy", ".safetensors"):
        assert cli(["sample", text_run, "--n", "4", "--out", tmp_path / f"s{suffix}"]).exit_code == 0
        assert stat.S_IMODE((tmp_path / f"s{suffix}").stat().st_mode) == 0o644, suffix


def test_sample_euler_few_steps(text_run, cli, tmp_path):
    out = tmp_path / "e.npy"
    result = cli(["sample", text_run, "--n", "30", "--solver", "euler", "--steps", "5", "--out", out])
    assert result.exit_code == 0, result.output
    assert "euler (5 NFE)" in result.stderr
    assert np.load(out).shape == (30, 8)


def test_sample_bad_suffix(text_run, cli, user_error, tmp_path):
    user_error(cli(["sample", text_run, "--n", "30", "--out", tmp_path / "s.csv"]), "s.csv", ".npy")
    assert not list(tmp_path.iterdir())


def test_sample_neighbors_prints_training_texts(text_run, cli):
    result = cli(["sample", text_run, "--n", "30", "--neighbors", "2", "--show", "1"])
    assert result.exit_code == 0, result.output
    assert "sample 0" in result.output and "sample 1" not in result.output
    rows = re.findall(r"^\s+(-?\d\.\d{3})\s+(text number (\d+))$", result.stderr, flags=re.M)
    assert len(rows) == 2, result.stderr
    train = set(json.loads((text_run / "splits.json").read_text())["train"])
    for cosine, _, index in rows:
        assert -1.0 <= float(cosine) <= 1.0
        assert int(index) in train  # neighbours come from the training split's texts


def test_sample_neighbors_without_texts(plain_run, cli, user_error):
    user_error(cli(["sample", plain_run, "--n", "30", "--neighbors", "2"]), "--neighbors", "no texts", "--texts")


def test_sample_decode_on_non_sonar_dims_fails_before_writing(text_run, cli, user_error, tmp_path):
    out = tmp_path / "samples.npy"
    user_error(cli(["sample", text_run, "--n", "5", "--decode", "--out", out]), "--decode", "1024-D", "8-D")
    assert not out.exists()


@pytest.fixture(scope="module")
def sonar_sized_run(tmp_path_factory, cli, make_data):
    """A tiny run on 1024-D rows, so --decode gets as far as importing SONAR."""
    folder = tmp_path_factory.mktemp("d1024")
    data, _ = make_data(folder, n=60, dim=1024, texts=False)
    out = folder / "run"
    result = cli(["train", "--data", data, "--arch", "mlp", "--scale", "tiny", "--model-opt", "hidden_dim=16",
                  "--steps", "2", "--val-every", "1", "--n-val", "10", "--n-test", "10", "--quiet", "--out", out])
    assert result.exit_code == 0, result.output
    return out


def test_sample_decode_without_sonar(sonar_sized_run, cli, user_error, block_imports):
    block_imports("sonar")
    user_error(cli(["sample", sonar_sized_run, "--n", "3", "--decode"]), "scaleflow[sonar]")


def test_sample_not_a_run(cli, user_error, tmp_path):
    user_error(cli(["sample", tmp_path, "--n", "5"]), str(tmp_path), "not a scaleflow run folder")


# --------------------------------------------------------------------------- eval


@pytest.fixture(scope="module")
def evaluated(text_run, plain_run, cli):
    """text_run evaluated without the NFE curve, plain_run with it (the default)."""
    quick = cli(["eval", text_run, "--n", "40", "--bootstrap", "20", "--no-nfe-curve"])
    full = cli(["eval", plain_run, "--n", "40", "--bootstrap", "20"])
    return quick, full


def test_eval_writes_every_metric_with_ci_and_floor(evaluated, text_run):
    result, _ = evaluated
    assert result.exit_code == 0, result.output
    report = json.loads((text_run / "eval.json").read_text())
    metrics = {k for k, v in report.items() if isinstance(v, dict) and "value" in v}
    assert metrics == METRICS
    assert set(report) - METRICS <= {"stats", "nfe_curve", "settings", "reference"}
    for name in METRICS:
        entry = report[name]
        assert isinstance(entry["value"], float) and math.isfinite(entry["value"]), name
        lo, hi = entry["ci"]
        assert len(entry["ci"]) == 2 and lo <= hi, (name, entry["ci"])
        floor, floor_ci = entry["floor"], entry["floor_ci"]
        if name in NO_FLOOR:
            assert floor is None and floor_ci is None, name
            continue
        assert isinstance(floor, float) and len(floor_ci) == 2 and floor_ci[0] <= floor_ci[1], (name, floor_ci)
        if name in SHARES:
            assert 0 <= lo <= entry["value"] <= hi <= 1 and 0 <= floor_ci[0] <= floor <= floor_ci[1] <= 1, name
    assert report["nfe_curve"] == []
    settings = report["settings"]
    assert settings["n_generated"] == settings["n_real_draw"] == settings["n_requested"] == 40
    assert settings["n_test"] == 50 and settings["n_train"] == 200
    assert (text_run / "eval_samples.safetensors").is_file()


def test_eval_values(evaluated, text_run):
    """Numbers, not only finiteness: a 20-step model is far from the data, real rows are not."""
    report = json.loads((text_run / "eval.json").read_text())
    fd, valid = report["fd"], report["validity"]
    assert fd["value"] >= 0 and fd["floor"] > 0 and fd["ci"][0] <= fd["value"] <= fd["ci"][1]
    assert fd["excess"] == pytest.approx(fd["value"] - fd["floor"])
    assert fd["excess_ci"][0] <= fd["excess"] <= fd["excess_ci"][1]
    assert fd["value"] > fd["floor_ci"][1] and fd["excess_ci"][0] > 0  # the untrained-ish model is worse than data
    # Extrapolated to infinite samples the real draw's FD shrinks towards 0 (n = 40 in 8-D: mostly bias).
    assert abs(fd["floor_inf"]) < 0.5 * fd["floor"] and math.isfinite(fd["fd_inf"])
    assert fd["extrapolation"]["sizes"][0] == 20 and fd["extrapolation"]["sizes"][-1] == 40
    # FD_inf's interval: the fit rerun on half-samples (sizes halved), 10 times (FD_INF_RESAMPLES < --bootstrap 20).
    assert fd["fd_inf_ci"][0] < fd["fd_inf"] < fd["fd_inf_ci"][1]
    assert fd["floor_inf_ci"][0] < fd["floor_inf"] < fd["floor_inf_ci"][1]
    assert fd["extrapolation"]["resample_sizes"] == sorted({round(s / 2) for s in fd["extrapolation"]["sizes"]})
    assert fd["extrapolation"]["resamples"] == 10
    assert report["precision"]["ci_method"].startswith("half-samples")
    # Real training rows are valid 95% of the time by construction: 38 of the 40 drawn.
    assert valid["floor"] == pytest.approx(0.95) and -1 <= valid["threshold"] <= 1
    assert valid["value"] < valid["floor"]
    assert report["nearest_cosine"]["floor"] > report["nearest_cosine"]["value"]
    assert report["precision"]["floor"] > 0.8 and report["mmd"]["floor_ci"][0] < 0 < report["mmd"]["floor_ci"][1]


def _row(stdout: str, name: str) -> list[str]:
    """The cells of the table row whose first cell is `name`."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in\n{stdout}")


def test_eval_prints_table(evaluated, text_run):
    result, _ = evaluated
    for text in ("fd", "floor", "95% CI", "coverage", "straightness", "validity", str(text_run / "eval.json")):
        assert text in result.stdout, text
    report = json.loads((text_run / "eval.json").read_text())
    fd = _row(result.stdout, "fd")
    assert fd[1] == f"{report['fd']['value']:.4g}" and fd[3] == f"{report['fd']['value'] / report['fd']['floor']:.2f}x"
    assert _row(result.stdout, "fd_excess")[1] == f"{report['fd']['excess']:.4g}"
    assert _row(result.stdout, "fd_inf")[1] == f"{report['fd']['fd_inf']:.4g}"
    assert _row(result.stdout, "mmd")[3] == "-"  # MMD is never a ratio to its ~0 floor
    assert _row(result.stdout, "validity")[3].endswith("x")
    floor_rows = [line for line in result.stdout.splitlines() if line.strip("│ ").startswith("floor")]
    assert len(floor_rows) == len(METRICS - NO_FLOOR) + 1  # and fd_inf's floor
    assert "excess" in result.stdout and "extrapolated to infinite samples" in result.stdout
    lo, hi = report["fd"]["fd_inf_ci"]
    assert _row(result.stdout, "fd_inf")[2] == f"[{lo:.4g}, {hi:.4g}]"  # FD_inf with its interval
    assert "Reading FD" in result.stdout and "fit over n = 20..40" in result.stdout
    assert "memorization's is conditional on the training set" in " ".join(result.stdout.split())
    # The ranking rule's line: the worst ratio to the floors and the measure that binds it.
    (rank,) = [line for line in result.stdout.splitlines() if line.startswith("rank: worst ratio")]
    assert "bound by" in rank and "novelty" in rank


def test_eval_refuses_too_few_samples(text_run, cli, user_error):
    user_error(cli(["eval", text_run, "--n", "1"]), "--n 1", "--n >= 6", "neighbours", "covariance")


def test_eval_caps_n_at_the_training_rows(text_run, cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    result = cli(["eval", run, "--n", "250", "--bootstrap", "5", "--no-nfe-curve"])
    assert result.exit_code == 0, result.output
    settings = json.loads((run / "eval.json").read_text())["settings"]
    assert settings["n_requested"] == 250 and settings["n_generated"] == settings["n_real_draw"] == 200
    assert "value and floor both use 200" in result.stderr


def test_eval_nfe_curve(evaluated, plain_run):
    result = evaluated[1]
    assert result.exit_code == 0, result.output
    curve = json.loads((plain_run / "eval.json").read_text())["nfe_curve"]
    assert curve and {row["solver"] for row in curve} == {"euler", "heun", "rk4", "dopri5"}
    for row in curve:
        assert row["nfe"] >= 1 and math.isfinite(row["fd"]), row


def test_eval_unknown_solver(text_run, cli, user_error):
    user_error(cli(["eval", text_run, "--solver", "nope"]), "--solver", "'nope'", "euler")


def test_eval_nfe_solvers_choose_the_curve(text_run, cli, user_error, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    result = cli(["eval", run, "--n", "40", "--bootstrap", "2", "--reference", "none", "--nfe-solvers", "euler, rk4,euler"])
    assert result.exit_code == 0, result.output
    curve = json.loads((run / "eval.json").read_text())["nfe_curve"]
    assert [row["solver"] for row in curve] == ["euler"] * 6 + ["rk4"] * 6
    assert [row["nfe"] for row in curve if row["solver"] == "rk4"] == [4, 8, 16, 32, 64, 128]
    for bad in ("rk5", ","):
        user_error(cli(["eval", text_run, "--nfe-solvers", bad]), "--nfe-solvers", repr(bad), "euler")
    user_error(cli(["eval", text_run, "--no-nfe-curve", "--nfe-solvers", "rk5"]), "--nfe-solvers")


def test_eval_not_a_run(cli, user_error, tmp_path):
    user_error(cli(["eval", tmp_path]), "not a scaleflow run folder")


# --------------------------------------------------------------------------- compare


def test_compare_two_evaluated_runs(evaluated, text_run, plain_run, cli, tmp_path):
    assert all(r.exit_code == 0 for r in evaluated)
    out = tmp_path / "fig"
    result = cli(["compare", text_run, plain_run, "--out", out, "--no-map"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for name in ("curves.png", "metrics.png", "nfe.png"):
        assert (out / name).stat().st_size > 0, name
        assert f"wrote {out / name}" in result.stdout
    assert not (out / "map.png").exists()
    for text in ("with_texts", "no_texts", "fd", "coverage"):
        assert text in result.stdout, text


def test_compare_not_a_run(cli, user_error, tmp_path, text_run):
    user_error(cli(["compare", text_run, tmp_path, "--no-map", "--out", tmp_path / "fig"]), "not a scaleflow run folder")


def test_sample_out_under_a_file(text_run, cli, user_error, tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder\n")
    user_error(cli(["sample", text_run, "--n", "4", "--out", blocker / "s.npy"]), "notes.txt")


def test_noise_scale_narrows_samples_and_is_recorded(text_run, cli, tmp_path):
    spreads = {}
    for scale in ("1.0", "0.3"):
        out = tmp_path / f"s{scale}.npy"
        result = cli(["sample", text_run, "--n", "200", "--out", out, "--noise-scale", scale])
        assert result.exit_code == 0, result.output
        spreads[scale] = np.load(out).std(0).mean()
    assert spreads["0.3"] < 0.8 * spreads["1.0"]  # a cooler start, a narrower cloud of samples
    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    result = cli(["eval", run, "--bootstrap", "5", "--no-nfe-curve", "--noise-scale", "0.5"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval.json").read_text())["settings"]["noise_scale"] == 0.5


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_noise_scale_must_be_positive(text_run, cli, user_error, command):
    user_error(cli([command, text_run, "--noise-scale", "0"]), "--noise-scale", "> 0")


def test_project_sphere_off_a_sphere_is_refused_in_one_line(text_run, cli, user_error, tmp_path):
    # These rows are a low-rank Gaussian, not a normalized encoder's: no sphere to project onto.
    user_error(cli(["eval", text_run, "--project-sphere", "--no-nfe-curve", "--reference", "none", "--bootstrap", "2"]),
               "--project-sphere", "do not share one norm")
    user_error(cli(["sample", text_run, "--n", "8", "--project-sphere", "--out", tmp_path / "s.npy"]),
               "--project-sphere", "do not share one norm")
    assert not (tmp_path / "s.npy").exists()
