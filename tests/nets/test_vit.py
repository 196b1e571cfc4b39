"""The ViT classifier family of the optimizer scale study: the note's parameter counts, shapes, patches."""
from __future__ import annotations

import pytest
import torch

from scaleflow.nets import classifier_parameter_table, create_model, list_available_scales
from scaleflow.nets.vit import VIT_SCALES, ViTClassifier

# Design note 004: counts at the CIFAR-10 setting (32x32x3, patch 4, 10 classes).
NOTE_COUNTS = {"tiny": 2.7e6, "small": 10.7e6, "medium": 25.3e6, "large": 56.8e6, "xl": 100.9e6}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("scale", list(VIT_SCALES))
def test_counts_within_two_percent_of_the_notes(scale):
    with torch.device("meta"):  # no memory for the 100M-parameter xl
        model = create_model("vit", scale, image_size=32, patch_size=4, channels=3, num_classes=10)
    assert abs(count(model) - NOTE_COUNTS[scale]) / NOTE_COUNTS[scale] < 0.02, count(model)


def test_tiny_count_by_hand():
    d, depth, classes, patches = 192, 6, 10, 64
    block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
    expected = (48 * d + d) + d + (patches + 1) * d + depth * block + 2 * d + (d * classes + classes)
    assert count(create_model("vit", "tiny")) == expected == 2_693_578


def test_shapes_on_digits_and_cifar():
    torch.manual_seed(0)
    digits = create_model("vit", "tiny", image_size=8, patch_size=2, channels=1, num_classes=10)
    assert digits(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    cifar = ViTClassifier(dim=32, depth=1, heads=2)
    assert cifar(torch.randn(3, 3, 32, 32)).shape == (3, 10)


def test_patches_are_the_image_blocks_row_by_row():
    model = ViTClassifier(image_size=4, patch_size=2, channels=1, dim=8, depth=1, heads=2)
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    patches = model.patches(image)
    assert patches.shape == (1, 4, 4)
    assert patches[0, 0].tolist() == [0, 1, 4, 5] and patches[0, 1].tolist() == [2, 3, 6, 7]
    assert patches[0, 3].tolist() == [10, 11, 14, 15]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ViTClassifier(image_size=30, patch_size=4)
    with pytest.raises(ValueError, match="unknown scale 'huge' for vit; available: tiny, small, medium, large, xl"):
        create_model("vit", "huge")
    with pytest.raises(ValueError, match="unknown option"):
        create_model("vit", "tiny", input_dim=8)


def test_the_registry_lists_the_five_scales_and_counts_them():
    assert list_available_scales()["vit"] == ["tiny", "small", "medium", "large", "xl"]
    table = classifier_parameter_table()
    assert table["vit"]["tiny"] == 2_693_578
    counts = list(table["vit"].values())
    assert counts == sorted(counts)
    model = create_model("vit", "small", image_size=32, patch_size=4, num_classes=10)
    assert (model.arch, model.scale, model.config["dim"]) == ("vit", "small", 384)


def test_each_block_has_separate_q_k_v_out_and_mlp_in_out():
    names = {name for name, _ in create_model("vit", "tiny").named_parameters()}
    for part in ("attn.q", "attn.k", "attn.v", "attn.out", "mlp.fc_in", "mlp.fc_out"):
        assert f"blocks.0.{part}.weight" in names, part
