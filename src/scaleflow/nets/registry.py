"""One registry for every network: the velocity families with their Tiny/Small/Base scales, the ViT
classifier family of the optimizer scale study with its Tiny..XL scales, and the one factory.

Configurations overlay in one order: the family's defaults <- the scale's config <- overrides.
The scale configs are the design notes' (notes 001 and 004); each family's defaults equal its `small`.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from torch import nn

from scaleflow.nets.dit import DiTVelocityNetwork
from scaleflow.nets.mamba import MambaVelocityNetwork
from scaleflow.nets.mlp import MLPVelocityNetwork
from scaleflow.nets.unet import UNetMLPVelocityNetwork
from scaleflow.nets.vit import VIT_SCALES, ViTClassifier
from scaleflow.reference.fit import REFERENCE_PRIORS

logger = logging.getLogger(__name__)

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "mlp": MLPVelocityNetwork,
    "dit": DiTVelocityNetwork,
    "unet": UNetMLPVelocityNetwork,
    "mamba": MambaVelocityNetwork,
}

# Image classifiers `[B, C, H, W] -> [B, classes]`: not velocity networks (training refuses them), but
# built, scaled and counted by the same factory.
CLASSIFIERS: dict[str, type[nn.Module]] = {"vit": ViTClassifier}
# Reference priors (`scaleflow.reference`): fitted, not trained, and without scales; built back from a run
# folder by the same factory.
FAMILIES: dict[str, type[nn.Module]] = {**ARCHITECTURES, **CLASSIFIERS, **REFERENCE_PRIORS}

SCALES = ("tiny", "small", "base")  # the velocity networks' scales
CLASSIFIER_SCALES = tuple(VIT_SCALES)  # tiny, small, medium, large, xl

SCALING_CONFIGS: dict[str, dict[str, Any]] = {
    # MLP: 0.36M / 0.92M / 1.77M
    "mlp_tiny": {"hidden_dim": 128, "num_layers": 4},
    "mlp_small": {"hidden_dim": 256, "num_layers": 5},
    "mlp_base": {"hidden_dim": 384, "num_layers": 6},
    # DiT: 3.16M / 9.31M / 20.9M
    "dit_tiny": {"hidden_dim": 256, "num_layers": 2, "num_heads": 4},
    "dit_small": {"hidden_dim": 384, "num_layers": 3, "num_heads": 6},
    "dit_base": {"hidden_dim": 512, "num_layers": 4, "num_heads": 8},
    # U-Net MLP: 5.17M / 7.02M / 9.37M (concatenative skips widen the decoder)
    "unet_tiny": {"hidden_dims": (256, 128)},
    "unet_small": {"hidden_dims": (512, 256)},
    "unet_base": {"hidden_dims": (768, 384)},
    # Mamba (DiM): 16 chunks of 64 by default
    "mamba_tiny": {"hidden_dim": 128, "num_layers": 2},
    "mamba_small": {"hidden_dim": 256, "num_layers": 4},
    "mamba_base": {"hidden_dim": 384, "num_layers": 6},
    # ViT classifier (note 004), at 32x32x3, patch 4, 10 classes: 2.7M / 10.7M / 25.3M / 56.8M / 100.9M
    **{f"vit_{scale}": {"dim": dim, "depth": depth, "heads": heads} for scale, (dim, depth, heads) in VIT_SCALES.items()},
}


def _check_arch(arch: str) -> type[nn.Module]:
    if arch not in FAMILIES:
        raise ValueError(f"unknown architecture {arch!r}; available: {', '.join(FAMILIES)}")
    return FAMILIES[arch]


def default_config(arch: str) -> dict[str, Any]:
    """The family's defaults: its constructor's keyword defaults (input_dim 1024, time_embed_dim 256, ...)."""
    signature = inspect.signature(_check_arch(arch).__init__)
    return {name: p.default for name, p in signature.parameters.items() if name != "self"}


def list_available_scales() -> dict[str, list[str]]:
    """`{arch: [scales]}` for every scaled family (networks and classifiers), smallest first."""
    return {arch: [key.split("_", 1)[1] for key in SCALING_CONFIGS if key.split("_", 1)[0] == arch]
            for arch in FAMILIES if arch not in REFERENCE_PRIORS}  # reference priors have no scales


def get_scaled_config(arch: str, scale: str) -> dict[str, Any]:
    """A copy of the scale's architecture-specific config, e.g. `get_scaled_config("dit", "tiny")`."""
    _check_arch(arch)
    key = f"{arch}_{scale}"
    if key not in SCALING_CONFIGS:
        raise ValueError(f"unknown scale {scale!r} for {arch}; available: {', '.join(list_available_scales()[arch])}")
    return dict(SCALING_CONFIGS[key])


def resolve_config(arch: str, scale: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The full constructor config: defaults <- scale config <- overrides, validated.

    Raises:
        ValueError: unknown arch, scale or option (listing what exists), or a non-positive size.
    """
    defaults = default_config(arch)
    scaled = get_scaled_config(arch, scale) if scale is not None else {}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {arch}; available: {', '.join(defaults)}")
    for key, value in overrides.items():
        if key in scaled and _normalized(value) != _normalized(scaled[key]):
            logger.warning("%s/%s: %s=%r overrides the scale's %r", arch, scale, key, value, scaled[key])
    config = {**defaults, **scaled, **overrides}
    for key, default in defaults.items():
        if isinstance(default, bool) or not isinstance(default, (int, tuple)):
            continue  # only sizes (ints, tuples of ints) are checked here; the constructor checks the rest
        value = config[key]
        sizes = list(value) if isinstance(value, (tuple, list)) else [value]
        if not sizes or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
            raise ValueError(f"{arch}: {key} must be positive integer(s); got {value!r}")
    if "hidden_dims" in config:
        config["hidden_dims"] = tuple(config["hidden_dims"])
    return config


def _normalized(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def create_model(arch: str, scale: str | None = None, **overrides: Any) -> nn.Module:
    """Build a network by family and scale: a velocity network `v(x: [B, D], t) -> [B, D]`, or (family
    `vit`) an image classifier `[B, C, H, W] -> [B, num_classes]`.

    Examples:
        create_model("mlp")                          # the family's defaults (= small)
        create_model("dit", "tiny")                  # a scale from SCALING_CONFIGS
        create_model("dit", "base", input_dim=384)   # any constructor option overrides
        create_model("vit", "small", image_size=32, patch_size=4, num_classes=10)

    The model carries `arch`, `scale` and `config` (the resolved constructor kwargs), so that it
    can be written down and rebuilt exactly.
    """
    config = resolve_config(arch, scale, **overrides)
    try:
        model = FAMILIES[arch](**config)
    except ValueError as err:
        raise ValueError(f"{arch}{'/' + scale if scale else ''}: {err}") from None
    for name, value in (("arch", arch), ("scale", scale), ("config", config)):
        setattr(model, name, value)  # plain attributes (nn.Module's typed __setattr__ is for tensors and modules)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with `requires_grad`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_table(input_dim: int = 1024) -> dict[str, dict[str, int]]:
    """`{arch: {scale: parameter count}}` of the velocity networks at the given input dimension.

    Models are built on the meta device: counting the base scales allocates nothing.
    """
    with torch.device("meta"):
        return {
            arch: {scale: count_parameters(create_model(arch, scale, input_dim=input_dim)) for scale in scales}
            for arch, scales in list_available_scales().items() if arch in ARCHITECTURES
        }


def classifier_parameter_table(image_size: int = 32, patch_size: int = 4, channels: int = 3,
                               num_classes: int = 10) -> dict[str, dict[str, int]]:
    """`{arch: {scale: parameter count}}` of the classifiers (default: the CIFAR-10 setting), on the meta device."""
    sizes = {"image_size": image_size, "patch_size": patch_size, "channels": channels, "num_classes": num_classes}
    with torch.device("meta"):
        return {
            arch: {scale: count_parameters(create_model(arch, scale, **sizes)) for scale in scales}
            for arch, scales in list_available_scales().items() if arch in CLASSIFIERS
        }
