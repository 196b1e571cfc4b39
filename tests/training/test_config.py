import pytest

from scaleflow.training.config import ConfigError, TrainConfig, make_config


def test_overlay_order_defaults_yaml_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("arch: dit\nsteps: 50\nlr: 0.01\n")
    config = make_config({"steps": 70, "lr": None}, yaml_path=path)
    assert (config.arch, config.steps, config.lr) == ("dit", 70, 0.01)
    assert config.batch_size == TrainConfig().batch_size


def test_yaml_round_trip(tmp_path):
    config = make_config({"arch": "unet", "model": {"hidden_dims": [64, 32]}, "n_val": 0.2})
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert make_config(yaml_path=path) == config


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"arch": "rnn"}, "arch: unknown architecture 'rnn'; available: mlp, dit, unet, mamba"),
        ({"scale": "huge"}, "scale: unknown scale 'huge'"),
        ({"flow": "ddpm"}, "flow: unknown flow 'ddpm'"),
        ({"steps": 0}, "steps: Input should be greater than 0"),
        ({"n_val": 1.5}, "n_val: give a whole row count (>= 6) or a fraction in (0, 1); got 1.5"),
        ({"n_val": 0}, "n_val: needs at least 6 rows (a loss, and evaluation's PRDC with 5 nearest neighbours); got 0"),
        ({"n_test": 5}, "n_test: needs at least 6 rows"),
        ({"n_train": 15}, "n_train: Input should be greater than or equal to 16"),
        ({"n_test": True}, "n_test: give a whole row count"),
        ({"out": ""}, "out: give a folder path, not an empty string"),
        ({"learning_rate": 1}, "learning_rate: unknown option; known: data,"),
        ({"precision": "fp8"}, "precision:"),
    ],
)
def test_bad_options_name_the_option(overrides, message):
    with pytest.raises(ConfigError) as info:
        make_config(overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("arch: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        make_config(yaml_path=bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        make_config(yaml_path=listing)
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        make_config(yaml_path=tmp_path / "missing.yaml")
    typo = tmp_path / "typo.yaml"
    typo.write_text("stepz: 3\n")
    with pytest.raises(ConfigError, match="typo.yaml: stepz: unknown option"):
        make_config(yaml_path=typo)
