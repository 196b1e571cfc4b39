"""Velocity networks `v(x: [B, D], t) -> [B, D]`, the ViT classifiers of the scale study, and the registry
that builds them by family and scale."""
from scaleflow.nets.registry import (
    ARCHITECTURES,
    CLASSIFIER_SCALES,
    CLASSIFIERS,
    FAMILIES,
    SCALES,
    SCALING_CONFIGS,
    classifier_parameter_table,
    count_parameters,
    create_model,
    default_config,
    get_scaled_config,
    list_available_scales,
    parameter_table,
    resolve_config,
)

__all__ = [
    "ARCHITECTURES",
    "CLASSIFIERS",
    "CLASSIFIER_SCALES",
    "FAMILIES",
    "SCALES",
    "SCALING_CONFIGS",
    "classifier_parameter_table",
    "count_parameters",
    "create_model",
    "default_config",
    "get_scaled_config",
    "list_available_scales",
    "parameter_table",
    "resolve_config",
]
