import logging

import pytest
import torch

import scaleflow
from scaleflow.nets import SCALES, SCALING_CONFIGS, count_parameters, create_model, get_scaled_config, list_available_scales, parameter_table

# The design notes' measured tables (input_dim=1024), which our structures must reproduce exactly.
EXACT_COUNTS = {
    "mlp": {"tiny": 362_112, "small": 920_064, "base": 1_773_184},
    "dit": {"tiny": 3_155_712, "small": 9_309_952, "base": 20_874_752},
}
UNET_NOTES = {"tiny": 5.14e6, "small": 6.89e6, "base": 9.07e6}


@pytest.mark.parametrize("arch", sorted(EXACT_COUNTS))
@pytest.mark.parametrize("scale", SCALES)
def test_counts_equal_the_notes(arch, scale):
    assert count_parameters(create_model(arch, scale)) == EXACT_COUNTS[arch][scale]


@pytest.mark.parametrize("scale", SCALES)
def test_unet_counts_within_five_percent_of_the_notes(scale):
    count = count_parameters(create_model("unet", scale))
    assert abs(count / UNET_NOTES[scale] - 1) < 0.05


def test_each_scale_is_bigger_and_mamba_at_least_doubles():
    table = parameter_table(1024)
    for arch, counts in table.items():
        assert counts["tiny"] < counts["small"] < counts["base"], arch
    assert table["mamba"]["small"] >= 2 * table["mamba"]["tiny"]
    assert table["mamba"]["base"] >= 2 * table["mamba"]["small"]


def test_meta_table_equals_real_counts():
    table = parameter_table(384)
    assert table["mlp"]["small"] == count_parameters(create_model("mlp", "small", input_dim=384))
    assert table["unet"]["tiny"] == count_parameters(create_model("unet", "tiny", input_dim=384))


def test_top_level_api():
    assert scaleflow.create_model is create_model
    assert scaleflow.SCALING_CONFIGS is SCALING_CONFIGS
    assert callable(scaleflow.get_scaled_config) and callable(scaleflow.list_available_scales)
    assert scaleflow.count_parameters(torch.nn.Linear(3, 2)) == 8


def test_list_and_get_scaled_config():
    assert list_available_scales() == {**{arch: list(SCALES) for arch in ("mlp", "dit", "unet", "mamba")},
                                       "vit": ["tiny", "small", "medium", "large", "xl"]}
    assert get_scaled_config("mlp", "tiny") == {"hidden_dim": 128, "num_layers": 4}
    assert get_scaled_config("unet", "base") == {"hidden_dims": (768, 384)}
    config = get_scaled_config("dit", "small")
    config["hidden_dim"] = 1
    assert SCALING_CONFIGS["dit_small"]["hidden_dim"] == 384  # a copy, not the registry's dict


def test_no_scale_means_defaults_which_equal_small():
    for arch in ("mlp", "dit", "unet", "mamba"):
        assert count_parameters(create_model(arch)) == count_parameters(create_model(arch, "small"))


def test_overlay_order_and_override_warning(caplog):
    with caplog.at_level(logging.WARNING):
        model = create_model("mlp", "tiny", hidden_dim=64, input_dim=384)
    assert model.config["hidden_dim"] == 64 and model.config["num_layers"] == 4 and model.config["input_dim"] == 384
    assert "hidden_dim=64 overrides the scale's 128" in caplog.text
    assert (model.arch, model.scale) == ("mlp", "tiny")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        create_model("mlp", "tiny", hidden_dim=128, input_dim=384)  # agrees with the scale, or is not in it
    assert caplog.text == ""


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        (("transformer",), {}, "unknown architecture 'transformer'; available: mlp, dit, unet, mamba"),
        (("dit", "huge"), {}, "unknown scale 'huge' for dit; available: tiny, small, base"),
        (("dit", "small"), {"num_heads": 5}, "num_heads to divide hidden_dim"),
        (("mlp",), {"depth": 3}, "unknown option(s) depth for mlp; available:"),
        (("mlp",), {"hidden_dim": 0}, "hidden_dim must be positive"),
        (("unet",), {"hidden_dims": ()}, "hidden_dims must be positive"),
    ],
)
def test_errors_say_what_exists(args, kwargs, expected):
    with pytest.raises(ValueError) as info:
        create_model(*args, **kwargs)
    assert expected in str(info.value)
