"""The natural transfer source: a prior pretrained on the built-in corpus (12,000 WordNet glosses embedded by
all-MiniLM-L6-v2, 384-D), for `scaleflow train --init builtin` on other rows of the same embedding space.

Nothing is downloaded: the first use trains it (the default recipe on every built-in row, with the
network the fine-tuning run asks for) into `$SCALEFLOW_CACHE/pretrained/`, and later uses reuse it. An
interrupted pretraining resumes.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Optional

from scaleflow.data.builtin import builtin_metadata, is_builtin
from scaleflow.files import cache_root
from scaleflow.training.config import ConfigError, TrainConfig, make_config
from scaleflow.training.lock import RunFolderBusy

# What is pretrained: the defaults' recipe on all built-in rows; only the network follows the fine-tuned run.
# The plain defaults at every size (recipe none): the source does not change with how many rows it has.
PRETRAIN_RECIPE = {"data": "builtin", "steps": 3000, "seed": 0, "recipe": "none"}
# Options added after priors were first cached: at these values they leave a prior's folder name as it was.
LATER_OPTIONS = {"residual": "none", "min_steps": 0}


def pretrain_categories(config: TrainConfig) -> Optional[str]:
    """The built-in rows the prior for `config` pretrains on: all of them for other data; for a run on built-in
    categories, every other category (the run's own rows, held-out ones included, are never seen)."""
    if not is_builtin(config.data):
        return None
    if not config.categories:
        raise ConfigError("init_from: builtin pretrains on the built-in rows, which are this run's data (its test rows "
                          "would leak); fine-tune on some --categories (the prior then trains on the others) or other data")
    text = config.categories.strip()
    return text[1:] if text.startswith("!") else "!" + text


def check_builtin_transfer(config: TrainConfig, dim: int) -> None:
    """Refuse, before any pretraining, a run whose rows cannot take the built-in prior: another dimension
    (the built-in rows are 384-D all-MiniLM-L6-v2 embeddings), or the built-in rows themselves without
    `--categories` (`pretrain_categories`)."""
    builtin_dim = int(builtin_metadata()["dim"])  # read from the file's metadata: no rows loaded
    if dim != builtin_dim:
        raise ConfigError(f"init_from: builtin is a prior over the built-in {builtin_dim}-D all-MiniLM-L6-v2 "
                          f"embeddings; this run's rows are {dim}-D")
    pretrain_categories(config)


def pretrain_config(config: TrainConfig) -> TrainConfig:
    """The pretraining config for fine-tuning run `config`: its network (arch, scale, options, prediction,
    flow) on the built-in rows outside its data, the default recipe otherwise."""
    # A Gaussian-residual network is chosen by its samples: the validation loss cannot see what it adds to the
    # Gaussian (README, "Small data").
    residual = {"residual": "gaussian", "select_by": "samples"} if config.residual == "gaussian" else {}
    return make_config({**PRETRAIN_RECIPE, "arch": config.arch, "scale": config.scale, "model": dict(config.model),
                        "prediction": config.prediction, "flow": "icfm" if config.flow == "reflow" else config.flow,
                        "device": config.device, "categories": pretrain_categories(config), **residual})


def builtin_prior_folder(config: TrainConfig) -> Path:
    """Where the built-in prior for `config`'s network lives (a digest of its pretraining config)."""
    # "recipe" is left out so that priors pretrained before the option existed are found again.
    pretrain = pretrain_config(config).model_dump(exclude={"out", "device", "wandb", "wandb_project", "recipe"})
    for option, default in LATER_OPTIONS.items():  # likewise for priors pretrained before these options existed
        if pretrain[option] == default:
            del pretrain[option]
    digest = hashlib.sha256(json.dumps(pretrain, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache_root() / "pretrained" / f"builtin-{config.arch}-{config.scale or 'custom'}-{digest}"


def builtin_prior(config: TrainConfig, progress: bool = True) -> Path:
    """The run folder of the built-in prior for `config`'s network, trained first when it is not there yet."""
    from scaleflow.training.run import train

    folder = builtin_prior_folder(config)
    while not (folder / "summary.json").exists():
        pretrain = pretrain_config(config)
        print(f"pretraining the built-in prior for {config.arch}/{config.scale} on "
              f"{pretrain.categories or 'every built-in row'} once (cached in {folder}); {pretrain.steps} steps",
              file=sys.stderr)
        try:
            train(pretrain, folder, resume=(folder / "config.yaml").exists(), progress=progress)
        except RunFolderBusy:  # another process (a sweep's other trial) is pretraining it: wait for it
            time.sleep(10)
    return folder
