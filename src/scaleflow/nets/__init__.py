"""Velocity networks `v(x: [B, D], t) -> [B, D]` and the registry that builds them by family and scale."""
from scaleflow.nets.registry import (
    ARCHITECTURES,
    SCALES,
    SCALING_CONFIGS,
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
    "SCALES",
    "SCALING_CONFIGS",
    "count_parameters",
    "create_model",
    "default_config",
    "get_scaled_config",
    "list_available_scales",
    "parameter_table",
    "resolve_config",
]
