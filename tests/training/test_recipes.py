"""The data-size-aware default (`training/recipes.py`): the recipe is chosen by the number of training rows,
never changes an option the user gave, keeps a fine-tuning run's network, is recorded and survives a resume."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scaleflow.training.config import make_config
from scaleflow.training.recipes import SIZE_RECIPES, SizeRecipe, apply_recipe, describe, recipe_for
from scaleflow.training.run import train

TABLE = (SizeRecipe("small", 2000, {"scale": "tiny", "lr": 3e-4, "steps": 7}),
         SizeRecipe("tiny-data", 500, {"lr": 1e-4}))


def test_the_first_row_that_fits_is_chosen():
    assert recipe_for(400, TABLE).name == "tiny-data"
    assert recipe_for(500, TABLE).name == "tiny-data"
    assert recipe_for(501, TABLE).name == "small"
    assert recipe_for(2000, TABLE).name == "small"
    assert recipe_for(2001, TABLE) is None


def test_the_recipe_fills_only_what_the_user_left_unset():
    config, record = apply_recipe(make_config({"lr": 5e-3}), 1000, TABLE)
    assert (config.scale, config.lr, config.steps) == ("tiny", 5e-3, 7)
    assert record["set"] == {"scale": "tiny", "steps": 7} and record["kept"] == ["lr"]
    assert record["name"] == "small" and record["train_rows"] == 1000
    # Every value is now set: applying again (a resumed run reads its config.yaml) changes nothing.
    again, second = apply_recipe(config, 1000, TABLE)
    assert again == config and second["set"] == {}
    assert "scale=tiny" in describe(record) and "kept as given: lr" in describe(record)


def test_no_recipe_where_none_applies():
    plain = make_config({})
    assert apply_recipe(plain, 5000, TABLE) == (plain, None)  # a size no row covers
    off = make_config({"recipe": "none"})
    assert apply_recipe(off, 1000, TABLE) == (off, None)
    gaussian = make_config({"arch": "gaussian"})
    assert apply_recipe(gaussian, 1000, TABLE) == (gaussian, None)  # fitted, not trained


def test_a_fine_tuning_run_keeps_its_network(tmp_path):
    config, record = apply_recipe(make_config({"init_from": str(tmp_path)}), 1000, TABLE)
    assert config.scale == "small" and config.lr == 3e-4
    assert "scale" in record["kept"]


def test_a_chosen_optimizer_or_network_keeps_its_rate_and_scale():
    config, record = apply_recipe(make_config({"optimizer": "sgd"}), 1000, TABLE)
    assert config.lr == 1e-3 and config.scale == "tiny" and "lr" in record["kept"]
    config, record = apply_recipe(make_config({"optimizer": "adamw"}), 1000, TABLE)
    assert config.lr == 3e-4  # the recipe's rate is AdamW's
    config, record = apply_recipe(make_config({"model": {"depth": 3}}), 1000, TABLE)
    assert config.scale == "small" and "scale" in record["kept"]


def test_the_shipped_table_is_valid():
    # Each row's options are real options with valid values, and sizes are distinct.
    sizes = [r.max_rows for r in SIZE_RECIPES]
    assert len(set(sizes)) == len(sizes)
    for recipe in SIZE_RECIPES:
        config, record = apply_recipe(make_config({}), recipe.max_rows, (recipe,))
        assert record["set"] == recipe.options
        assert recipe.why


def test_a_run_records_its_recipe_and_a_resume_keeps_it(tmp_path, monkeypatch, capsys):
    import scaleflow.training.recipes as recipes

    table = (SizeRecipe("small", 2000, {"lr": 2e-3, "ema_decay": 0.99}, "test"),)
    monkeypatch.setattr("scaleflow.training.run.apply_recipe",
                        lambda config, rows: recipes.apply_recipe(config, rows, table))
    rng = np.random.default_rng(0)
    data = tmp_path / "rows.npy"
    np.save(data, rng.standard_normal((300, 6)).astype(np.float32))
    options = dict(data=str(data), arch="mlp", scale="tiny", steps=4, batch_size=32, val_every=2, checkpoint_every=2,
                   n_val=40, n_test=40, warmup_steps=1, device="cpu")
    summary = train(make_config(options), tmp_path / "run", progress=False)
    assert summary["recipe"]["set"] == {"lr": 2e-3, "ema_decay": 0.99}
    assert "'small' recipe" in capsys.readouterr().err
    saved = make_config(yaml_path=tmp_path / "run" / "config.yaml")
    assert (saved.lr, saved.ema_decay) == (2e-3, 0.99)
    assert json.loads((tmp_path / "run" / "model.json").read_text())["recipe"] == summary["recipe"]
    # A resumed run (here: extended) takes its config.yaml as it is and keeps the record of its first start.
    (tmp_path / "run" / "summary.json").unlink()
    resumed = train(saved, tmp_path / "run", resume=True, progress=False)
    assert resumed["recipe"] == summary["recipe"]
    assert "recipe" not in capsys.readouterr().err


def test_a_user_who_says_none_gets_the_plain_defaults(tmp_path, monkeypatch):
    import scaleflow.training.recipes as recipes

    monkeypatch.setattr("scaleflow.training.run.apply_recipe",
                        lambda config, rows: recipes.apply_recipe(config, rows, (SizeRecipe("s", 2000, {"lr": 2e-3}),)))
    rng = np.random.default_rng(0)
    data = tmp_path / "rows.npy"
    np.save(data, rng.standard_normal((300, 6)).astype(np.float32))
    summary = train(make_config(dict(data=str(data), arch="mlp", scale="tiny", steps=2, batch_size=32, val_every=2,
                                     n_val=40, n_test=40, warmup_steps=1, device="cpu", recipe="none")),
                    tmp_path / "run", progress=False)
    assert "recipe" not in summary
    assert make_config(yaml_path=tmp_path / "run" / "config.yaml").lr == 1e-3



def test_a_sweep_trial_with_recipe_auto_recognizes_its_own_run(tmp_path):
    """A trial's folder holds the config after the recipe; the trial asks for the one before it (recipe: auto):
    the same training, so a resumed or shared trial must not be refused as if the defaults had changed."""
    from scaleflow.files import write_json, write_text
    from scaleflow.sweeps.tasks import _check_same_training
    from scaleflow.training.config import ConfigError

    wanted = make_config({"recipe": "auto", "n_train": 1000, "seed": 1})
    recipe = SIZE_RECIPES[0]
    trained, record = apply_recipe(wanted, 1000, (recipe,))
    write_text(tmp_path / "config.yaml", trained.to_yaml())
    write_json(tmp_path / "model.json", {"recipe": record})
    _check_same_training(wanted, tmp_path)  # no error
    with pytest.raises(ConfigError, match="lr"):
        _check_same_training(make_config({"recipe": "auto", "n_train": 1000, "seed": 1, "lr": 0.01}), tmp_path)


def test_the_shipped_table_gives_the_residual_where_a_run_can_take_it_and_the_earlier_recipe_elsewhere():
    with_residual, without = SIZE_RECIPES
    config, record = apply_recipe(make_config({}), 1000)
    assert record["name"] == with_residual.name and config.residual == "gaussian" and config.min_steps == 1500
    config, record = apply_recipe(make_config({}), 2000)
    assert record["name"] == with_residual.name
    # Runs that keep no residual: given none, a velocity prediction, a path the closed form does not fit.
    for options in ({"residual": "none"}, {"prediction": "velocity"}, {"flow": "si-gvp"}, {"sigma": 0.1}):
        config, record = apply_recipe(make_config(options), 1000)
        assert record["name"] == without.name and config.residual == "none", options
        assert (config.lr, config.steps) == (without.options["lr"], without.options["steps"])
        assert apply_recipe(make_config(options), 2000) == (make_config(options), None)  # the plain defaults
    # Given the residual, a run keeps it and takes the rest of its recipe.
    config, record = apply_recipe(make_config({"residual": "gaussian"}), 1500)
    assert record["name"] == with_residual.name and "residual" in record["kept"] and config.lr == 1e-3
