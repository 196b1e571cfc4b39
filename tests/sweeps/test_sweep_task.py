"""The `train` trial: records every field a study compares; trials differing only in sampling share a run."""
import pytest

from scaleflow.evaluation.evaluate import METRICS
from scaleflow.nets import count_parameters
from scaleflow.sweeps.tasks import TrainTask, check_trial, split_options
from scaleflow.training.config import ConfigError
from scaleflow.training.run import load_run

TINY = {"data": "builtin", "arch": "mlp", "scale": "tiny", "steps": 20, "val_every": 10, "n_train": 300,
        "bootstrap": 5, "sample_steps": 4, "seed": 3}


@pytest.fixture(scope="module")
def two_trials(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    task = TrainTask(str(runs))
    first = task(dict(TINY))
    cooler = task({**TINY, "noise_scale": 0.9})
    return runs, first, cooler


def test_result_holds_every_recorded_field(two_trials):
    runs, result, _ = two_trials
    assert result["resolved"]["arch"] == "mlp" and result["resolved"]["seed"] == 3
    assert result["resolved"]["sample_steps"] == 4 and result["resolved"]["noise_scale"] == 1.0
    assert "out" not in result["resolved"]
    assert set(result["versions"]) == {"scaleflow", "torch", "numpy", "python"}
    run = load_run(result["run_dir"])
    assert result["params"] == count_parameters(run.model)
    assert result["train"]["steps"] == 20 and result["train"]["train_rows"] == 300
    assert result["train"]["best_val_loss"] > 0 and result["train"]["steps_per_second"] > 0
    assert list(result["metrics"]) == list(METRICS)
    for name in ("fd", "precision", "recall", "coverage", "validity", "memorization", "diversity"):
        entry = result["metrics"][name]
        assert len(entry["ci"]) == 2 and entry["floor"] is not None, name
    assert result["metrics"]["fd"]["excess"] == pytest.approx(result["metrics"]["fd"]["value"]
                                                              - result["metrics"]["fd"]["floor"])
    assert result["eval_settings"]["steps"] == 4 and result["eval_settings"]["seed"] == 3
    reference = result["reference"]  # the reference priors beside the trial, for a study's reference lines
    assert set(reference["priors"]) == {"gaussian", "gmm", "kde"} and reference["n"] == result["eval_settings"]["n_generated"]
    layer = next(iter(result["weights"].values()))
    assert {"effective_rank", "stable_rank", "sparsity", "count"} <= set(layer)
    assert result["timing"]["trained_here"] is True and result["timing"]["eval_seconds"] > 0
    assert result["memory"]["peak_rss_mb"] > 100


def test_trials_differing_only_in_sampling_share_one_run(two_trials):
    runs, first, cooler = two_trials
    assert cooler["run_dir"] == first["run_dir"] and len(list(runs.iterdir())) == 1
    assert cooler["timing"]["trained_here"] is False
    assert cooler["train"] == first["train"]
    assert cooler["resolved"]["noise_scale"] == 0.9 and cooler["eval_settings"]["noise_scale"] == 0.9
    # a cooler start gives more concentrated samples: precision up, recall not up
    assert cooler["metrics"]["fd"]["value"] != first["metrics"]["fd"]["value"]


@pytest.mark.parametrize("options,message", [
    ({"widht": 3}, "widht: not an option of a train trial"),
    ({"solver": "rk5"}, "solver: 'rk5' is not one of"),
    ({"n_eval": 3}, "n_eval: expected 0 .* or a whole number >= "),
    ({"noise_scale": 0}, "noise_scale: expected a number > 0"),
    ({"sample_steps": 2.5}, "sample_steps: expected a whole number"),
])
def test_bad_trial_options_name_the_option(options, message):
    with pytest.raises(ConfigError, match=message):
        split_options(options)


def test_check_trial_validates_training_values_too():
    with pytest.raises(ConfigError, match="lr"):
        check_trial({"lr": -1.0})
    check_trial({"lr": 1e-3, "noise_scale": 1.1})


def test_a_run_trained_with_other_values_is_not_rescored(two_trials, tmp_path):
    import shutil

    import yaml

    _, first, _ = two_trials
    runs = tmp_path / "runs"
    copy = runs / first["run_dir"].rsplit("/", 1)[-1]
    shutil.copytree(first["run_dir"], copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["lr"] = 0.5  # as if trained by a version with another default
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="trained with other values of lr"):
        TrainTask(str(runs))(dict(TINY))
