"""Reference priors end to end, as users type them: `train --arch gaussian|gmm|kde|closed-form` writes a run
folder that `sample` and `eval` use unchanged, and `eval` prints the best reference prior beside the floors."""
import json

import numpy as np
import pytest
import torch

from scaleflow.training.run import load_run


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory, data_files, cli):
    data, _ = data_files
    root = tmp_path_factory.mktemp("reference")
    runs = {}
    for arch in ("gaussian", "gmm", "kde", "closed-form"):
        extra = ["--model-opt", "smoothing=1.0"] if arch == "closed-form" else []
        result = cli(["train", "--data", data, "--arch", arch, "--n-val", "50", "--n-test", "50", "--out", root / arch,
                      "--quiet", *extra])
        assert result.exit_code == 0, result.output
        assert f"fitting reference prior {arch}" in result.output and f"done: {arch} with" in result.output
        runs[arch] = root / arch
    return runs


def test_reference_runs_are_run_folders(reference_runs):
    for arch, folder in reference_runs.items():
        run = load_run(folder)
        assert run.info["arch"] == arch and run.info["scale"] is None
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["reference"]["prior"] == arch and summary["steps"] == 0
        # The exact denoiser beats the constant predictor on the trainer's own validation draws.
        assert summary["best_val_loss"] < summary["baseline_val_loss"]
        x = torch.randn(4, run.info["input_dim"])
        assert run.model(x, torch.full((4,), 0.5)).shape == (4, run.info["input_dim"])
    assert json.loads((reference_runs["kde"] / "model.json").read_text())["config"]["n_rows"] == 200
    assert json.loads((reference_runs["closed-form"] / "summary.json").read_text())["reference"]["chosen"] == {
        "smoothing": 1.0, "n_noise": 4}


def test_sample_and_eval_a_reference_run(reference_runs, cli, tmp_path):
    run = reference_runs["gaussian"]
    out = tmp_path / "s.npy"
    result = cli(["sample", run, "--n", "64", "--out", out])
    assert result.exit_code == 0, result.output
    samples = np.load(out)
    assert samples.shape == (64, 8) and abs(samples.mean() - 5.0) < 1.0  # original space (the data's mean ~5)
    result = cli(["eval", run, "--n", "40", "--bootstrap", "10", "--no-nfe-curve"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval.json").read_text())
    reference = report["reference"]
    assert set(reference["priors"]) == {"gaussian", "gmm", "kde"} and reference["n"] == 40
    best = reference["best"]
    assert reference["priors"][best]["worst_ratio"] == max(p["worst_ratio"] for p in reference["priors"].values())
    assert f"ref {best}" in result.output and "reference priors on the same rows" in result.output
    # The run's own ODE samples and the same Gaussian's exact samples score alike (one prior, two samplers).
    exact = reference["priors"]["gaussian"]["metrics"]
    assert exact["fd"] == pytest.approx(report["fd"]["value"], rel=0.3)


def test_eval_reference_option(reference_runs, cli, user_error):
    run = reference_runs["kde"]
    result = cli(["eval", run, "--n", "40", "--bootstrap", "10", "--no-nfe-curve", "--reference", "none"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval.json").read_text())["reference"] is None
    assert "ref " not in result.output
    user_error(cli(["eval", run, "--reference", "gaussian,vae"]), "--reference", "vae", "closed-form")


@pytest.mark.parametrize("args, fragments", [
    (["--arch", "gmm", "--scale", "small"], ["scale", "gmm has no scales"]),
    (["--arch", "kde", "--flow", "otcfm"], ["flow", "exact flow of icfm"]),
    (["--arch", "kde", "--model-opt", "depth=3"], ["unknown option(s) depth for kde", "bandwidth"]),
    (["--arch", "gmm", "--model-opt", "reg_covar=0"], ["reg_covar", "must be > 0"]),
    (["--arch", "vae"], ["unknown architecture 'vae'", "closed-form"]),
])
def test_train_reference_refusals(args, fragments, data_files, cli, user_error, tmp_path):
    data, _ = data_files
    user_error(cli(["train", "--data", data, "--n-val", "50", "--n-test", "50", "--out", tmp_path / "r", *args]),
               *fragments)
    assert not (tmp_path / "r" / "model.json").exists()


def test_optimize_guides_a_reference_prior(reference_runs, cli, tmp_path):
    """Guided search steers a reference prior's exact flow like a trained one's (its density is exact)."""
    objective = tmp_path / "objective.py"
    objective.write_text("def score(x, texts=None):\n    return -((x - 5.0) ** 2).sum(-1)\n")
    result = cli(["optimize", reference_runs["gaussian"], "--objective", f"{objective}:score", "--seeds", "1",
                  "--budget", "16", "--method", "guided,prior", "--out", tmp_path / "search"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "search" / "search.jsonl").read_text().splitlines()]
    assert {r["method"] for r in lines} == {"guided", "prior"}
    assert all(np.isfinite(r["score"]) for r in lines)


def test_training_options_are_refused_for_a_reference_prior(data_files, cli, user_error, tmp_path):
    data, _ = data_files
    user_error(cli(["train", "--data", data, "--arch", "kde", "--steps", "100", "--lr", "0.1", "--out", tmp_path / "r"]),
               "--lr, --steps: reference prior kde is fitted, not trained")
    assert not (tmp_path / "r").exists()
