"""`scaleflow params`: the arch x scale parameter table, as Rich text and as JSON."""
from __future__ import annotations

import json

ARCHS = ("mlp", "dit", "unet", "mamba")
SCALES = ("tiny", "small", "base")


def test_table_lists_known_counts(cli):
    result = cli(["params"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "input_dim=1024" in out
    for text in ("362,112", "20,874,752", *ARCHS, *SCALES):
        assert text in out, text


def test_json_has_every_arch_and_scale(cli):
    result = cli(["params", "--json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert set(table) == {*ARCHS, "vit"}
    assert list(table["vit"]) == ["tiny", "small", "medium", "large", "xl"]
    assert table["vit"]["tiny"] == 2_693_578  # the CIFAR-10 setting by default
    for arch in ARCHS:
        assert set(table[arch]) == set(SCALES), arch
        assert all(isinstance(v, int) and v > 0 for v in table[arch].values()), arch
        assert table[arch]["tiny"] < table[arch]["small"] < table[arch]["base"], arch
    assert table["mlp"]["tiny"] == 362_112
    assert table["mlp"]["small"] == 920_064
    assert table["dit"]["base"] == 20_874_752


def test_input_dim_changes_counts(cli):
    default = json.loads(cli(["params", "--json"]).stdout)
    result = cli(["params", "--json", "--input-dim", "384"])
    assert result.exit_code == 0, result.output
    small = json.loads(result.stdout)
    assert set(small) == set(default)
    for arch in ARCHS:
        for scale in SCALES:
            # the input and output projections shrink with D; nothing else grows
            assert small[arch][scale] < default[arch][scale], (arch, scale)
    table = cli(["params", "--input-dim", "384"])
    assert table.exit_code == 0 and "input_dim=384" in table.stdout
    assert "362,112" not in table.stdout


def test_vit_table_at_the_cifar_and_the_digits_setting(cli):
    result = cli(["params"])
    assert "ViT classifiers at 32x32x3, patch 4, 10 classes" in result.stdout
    assert "2,693,578" in result.stdout and "xl" in result.stdout
    digits = json.loads(cli(["params", "--json", "--image-size", "8", "--patch-size", "4", "--channels", "1"]).stdout)
    assert digits["vit"]["tiny"] < 2_693_578  # fewer positions and a smaller patch embedding


def test_patch_not_dividing_the_image_is_a_user_error(cli, user_error):
    user_error(cli(["params", "--image-size", "30"]), "--image-size", "--patch-size")


def test_input_dim_zero_is_a_user_error(cli, user_error):
    result = cli(["params", "--input-dim", "0"])
    user_error(result, "--input-dim", "0")
    assert result.stdout == ""
