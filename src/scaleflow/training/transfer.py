"""Transfer (`init_from`, `scaleflow train --init RUN`): which runs a run may start from, and loading their weights."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from torch import nn

from scaleflow.files import read_json, read_safetensors
from scaleflow.nets import resolve_config
from scaleflow.nets.gaussian_residual import GaussianResidual
from scaleflow.training.config import ConfigError, TrainConfig


def initialize_from(model: nn.Module, source: str) -> None:
    """Load `source`'s EMA weights into `model` (a Gaussian-residual model: into its network; its Gaussian stays
    the one fitted to this run's rows). ConfigError in one line when they do not fit."""
    weights = Path(source) / "ema.safetensors"
    if not weights.exists():
        raise ConfigError(f"init_from: {source} has no ema.safetensors to start from")
    state = read_safetensors(weights)
    if isinstance(model, GaussianResidual):  # the network's weights; the Gaussian is this run's rows' own
        model, state = model.net, {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"init_from: {source} holds a different network ({str(err).splitlines()[0]})") from None


def _network_name(arch: str, scale: Optional[str], dim: int) -> str:
    return f"{arch}/{scale or 'custom'} at {dim}-D"


def check_transfer_source(config: TrainConfig, model: nn.Module, dim: int) -> dict:
    """What `init_from` names, checked before anything is written: a run folder whose network is the one this
    config builds (family, every option, input dimension). Returns its provenance record (for model.json and
    the summary). ConfigError in one line naming the source and the difference."""
    assert config.init_from is not None, "check_transfer_source is for runs with init_from"
    source = Path(config.init_from)
    if not (source / "model.json").is_file():
        raise ConfigError(f"init_from: {source} is not a run folder (no model.json)")
    info = read_json(source / "model.json")
    theirs, ours = info.get("input_dim"), dim
    if info.get("prediction", config.prediction) != config.prediction:
        raise ConfigError(f"init_from: {source} predicts {info.get('prediction')}, this run {config.prediction}: the "
                          "network's output would mean something else (use --prediction of the source)")
    if info.get("residual", "none") != config.residual:
        raise ConfigError(f"init_from: {source} has residual {info.get('residual', 'none')}, this run {config.residual}: "
                          "the network's output would mean something else (use --residual of the source)")
    if info.get("arch") != config.arch or theirs != ours:
        raise ConfigError(f"init_from: {source} holds {_network_name(info.get('arch'), info.get('scale'), theirs)}; "
                          f"this run builds {_network_name(config.arch, config.scale, ours)}: transfer needs the same "
                          "network and embedding dimension")
    # Options that change no weight (dropout is a training regularizer) may differ; keys a source written before
    # an option existed take its default.
    mine = json.loads(json.dumps(model.config))  # tuples as JSON lists, as model.json holds them
    theirs = json.loads(json.dumps(resolve_config(info["arch"], None, **info.get("config", {}))))
    different = sorted(k for k in set(mine) | set(theirs) if "dropout" not in k and mine.get(k) != theirs.get(k))
    if different:
        detail = ", ".join(f"{k} {theirs.get(k)!r} vs {mine.get(k)!r}" for k in different[:4])
        raise ConfigError(f"init_from: {source} holds a different {config.arch} network ({detail}); use its scale and "
                          "--model-opt")
    return {"run": str(source.resolve()), "arch": info.get("arch"), "scale": info.get("scale"),
            "data_source": info.get("data_source"), "normalization": config.init_normalization or "source"}
