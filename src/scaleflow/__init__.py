"""scaleflow: flow matching on embedding vectors, and model-scale studies."""
from scaleflow.nets import (
    SCALING_CONFIGS,
    count_parameters,
    create_model,
    get_scaled_config,
    list_available_scales,
)

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

from scaleflow.api import generate, load_run, train  # noqa: E402  (light: they import the library when called)

__all__ = ["SCALING_CONFIGS", "count_parameters", "create_model", "generate", "get_scaled_config",
           "list_available_scales", "load_run", "train"]
