"""The training configuration: validated once, overlaid in one order, written next to every run.

Order: these defaults <- a YAML file <- command-line options. A run is a pure function of its
resolved `TrainConfig` (plus the data file it names), so the run folder's `config.yaml` alone
reproduces it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scaleflow.data.augmentation import Augmentation
from scaleflow.data.prepare import MIN_HELD_OUT_ROWS, MIN_TRAIN_ROWS, PRDC_NEIGHBOURS
from scaleflow.flows.registry import FLOWS
from scaleflow.nets import ARCHITECTURES, SCALES
from scaleflow.reference.fit import REFERENCE_PRIORS, ReferenceFitError, check_fit_options


# Options that only a trained network uses: a reference prior refuses them rather than ignore them.
TRAINING_ONLY = frozenset({"steps", "optimizer", "lr", "warmup_steps", "min_lr_ratio", "grad_clip", "ema_decay",
                           "val_every", "patience", "min_steps", "select_by", "checkpoint_every", "log_every", "precision"})


def residual_fits_path(flow: str, sigma: float) -> bool:
    """Whether a Gaussian's closed-form x1-prediction (`nets/gaussian_residual.py`) is that of `flow`'s path: the
    straight path from N(0, I) without noise around it (`residual: gaussian` needs it)."""
    return flow in ("icfm", "otcfm", "reflow") and sigma == 0


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the option and the problem."""


class TrainConfig(BaseModel):
    """Everything a training run depends on."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # data
    data: str = Field("builtin", description="embedding file (.npy/.npz/.pt/.safetensors/.parquet) or 'builtin'")
    texts: Optional[str] = Field(None, description="optional .txt/.jsonl with one text per row")
    n_train: Optional[int] = Field(None, ge=MIN_TRAIN_ROWS, description="training rows (nested subsets); None = all")
    n_val: Union[int, float] = Field(0.1, description=f"validation rows: a count, or a fraction ({MIN_HELD_OUT_ROWS} to 1000 rows)")
    n_test: Union[int, float] = Field(0.1, description=f"test rows: a count, or a fraction ({MIN_HELD_OUT_ROWS} to 1000 rows)")
    categories: Optional[str] = Field(None, description="built-in data only: keep rows of these WordNet categories "
                                                        "(noun.animal,verb.*; !noun.animal drops them)")
    dedup: bool = Field(False, description="drop near-duplicate rows before splitting")
    dedup_threshold: float = Field(0.95, gt=0, le=1, description="cosine similarity counted as a duplicate")

    # model
    # dit small predicting x1: the defaults study's winner, every sample measure near its real-vs-real
    # floor at once on the built-in data (configs/sweeps/defaults-*.yaml; README, "Results")
    arch: str = Field("dit", description="velocity network family, or a reference prior (fitted, not trained): "
                                         "gaussian | gmm | kde | closed-form")
    scale: Optional[str] = Field("small", description="tiny | small | base (None: the family's defaults)")
    model: dict[str, Any] = Field(default_factory=dict, description="overrides of the scale's config")
    prediction: Literal["velocity", "x1"] = Field("x1", description="what the network outputs")
    residual: Literal["none", "gaussian"] = Field(
        "none", description="gaussian: the network's output is added to the exact x1-prediction of a Ledoit-Wolf "
                            "Gaussian fitted to the training rows, so it learns what the Gaussian misses "
                            "(nets/gaussian_residual.py)")

    # flow
    flow: str = Field("icfm", description="probability path and coupling")
    sigma: float = Field(0.0, ge=0, description="std of the Gaussian around the path")
    ot_method: Literal["exact", "sinkhorn"] = Field("exact", description="otcfm's transport solver")
    time_sampling: Literal["uniform", "logit-normal"] = Field("uniform", description="distribution of training t")
    source: Literal["standard", "gaussian"] = Field(
        "standard", description="where the flow starts: N(0, I) after per-dimension standardization (standard), or a "
                                "Gaussian fitted to the training rows (Ledoit-Wolf), by whitening the rows (gaussian)")
    reflow_source: Optional[str] = Field(None, description="reflow: the run whose ODE made the pairs")
    init_from: Optional[str] = Field(None, description="start from this run's EMA weights (same network and dim), "
                                                       "or 'builtin': a prior pretrained on the built-in data")
    init_normalization: Optional[Literal["source", "refit"]] = Field(
        None, description="with init_from: keep the source run's normalization statistics (source, the default: the "
                          "network sees the coordinates it learned in) or fit them to these training rows (refit)")
    aug: str = Field("", description="augmentation of data rows: e.g. mixup,noise,dropout or mixup=0.4,noise=0.05 "
                                     "(defaults 0.2, 0.1, 0.1; off at validation)")

    # optimisation
    steps: int = Field(3000, gt=0, description="optimizer steps")
    batch_size: int = Field(256, gt=0)
    optimizer: Literal["adamw", "sgd", "muon"] = Field(
        "adamw", description="adamw | sgd (momentum 0.9) | muon (hidden matrices; AdamW for the rest)")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0, description="linear warmup, then cosine decay")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor as a share of lr")
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm (0 disables)")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA decay, warmed up as min(decay, (1+s)/(10+s))")
    val_every: int = Field(100, gt=0, description="steps between validations")
    patience: int = Field(0, ge=0, description="validations without improvement before stopping (0: never)")
    min_steps: int = Field(0, ge=0, description="patience counts validations without improvement only after this step "
                                                "(a Gaussian-residual run's samples sit on a plateau for its first "
                                                "several hundred steps)")
    select_by: Literal["val_loss", "samples"] = Field(
        "val_loss", description="what picks the best weights (and counts patience): the validation loss, or the "
                                "memorization-aware worst ratio of EMA samples against the validation rows (samples)")
    recipe: Literal["auto", "none"] = Field(
        "auto", description="auto: options the user leaves unset follow the data-size recipe for the number of "
                            "training rows (training/recipes.py; printed when one applies); none: the plain defaults")
    checkpoint_every: int = Field(500, gt=0, description="steps between resumable checkpoints")
    log_every: int = Field(25, gt=0, description="steps between metrics.jsonl lines")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="training forward pass: bf16 autocast where the hardware is native (auto), or forced")
    seed: int = 0
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")

    # outputs
    out: Optional[str] = Field(None, description="run folder (default runs/<arch>-<scale>-<flow>)")
    wandb: bool = Field(False, description="log to Weights & Biases (offline unless WANDB_MODE says otherwise)")
    wandb_project: str = "scaleflow"

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value not in ARCHITECTURES and value not in REFERENCE_PRIORS:
            raise ValueError(f"unknown architecture {value!r}; available: {', '.join(ARCHITECTURES)}, "
                             f"or a reference prior: {', '.join(REFERENCE_PRIORS)}")
        return value

    @field_validator("scale")
    @classmethod
    def _known_scale(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and value not in SCALES:
            raise ValueError(f"unknown scale {value!r}; available: {', '.join(SCALES)}")
        return value

    @field_validator("flow")
    @classmethod
    def _known_flow(cls, value: str) -> str:
        if value not in FLOWS:
            raise ValueError(f"unknown flow {value!r}; available: {', '.join(FLOWS)}")
        return value

    @field_validator("n_val", "n_test", mode="before")
    @classmethod
    def _count_or_fraction(cls, value: Any) -> Union[int, float]:
        # The minimum is the data layer's (MIN_HELD_OUT_ROWS): said here too, so the option is named.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"give a whole row count (>= {MIN_HELD_OUT_ROWS}) or a fraction in (0, 1); got {value!r}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, float) and not 0 < value < 1:
            raise ValueError(f"give a whole row count (>= {MIN_HELD_OUT_ROWS}) or a fraction in (0, 1); got {value}")
        if isinstance(value, int) and value < MIN_HELD_OUT_ROWS:
            raise ValueError(f"needs at least {MIN_HELD_OUT_ROWS} rows (a loss, and evaluation's PRDC with "
                             f"{PRDC_NEIGHBOURS} nearest neighbours); got {value}")
        return value

    @field_validator("aug", mode="before")
    @classmethod
    def _augmentation(cls, value: Any) -> str:
        return Augmentation.parse(value).to_spec()  # canonical, so the saved config names every value

    @field_validator("out")
    @classmethod
    def _a_folder(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value.strip():
            raise ValueError("give a folder path, not an empty string")
        return value

    @model_validator(mode="before")
    @classmethod
    def _reference_has_no_scale(cls, values: Any) -> Any:
        # A reference prior has no scales: unless one is asked for (refused below), its scale is None.
        if isinstance(values, dict) and values.get("arch") in REFERENCE_PRIORS and "scale" not in values:
            values = {**values, "scale": None}
        return values

    @property
    def is_reference(self) -> bool:
        """A reference prior (`scaleflow.reference`): fitted to the training rows instead of trained."""
        return self.arch in REFERENCE_PRIORS

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.is_reference:
            name = self.arch
            problems = [(self.scale is not None, f"scale: reference prior {name} has no scales (leave --scale out)"),
                        (self.flow != "icfm" or self.sigma != 0,
                         f"flow: reference prior {name} is the exact flow of icfm with sigma 0 (leave --flow and --sigma out)"),
                        (self.prediction != "x1", f"prediction: reference prior {name} predicts x1 in closed form"),
                        (bool(self.aug), f"aug: reference prior {name} is fitted to the rows as they are"),
                        (self.source != "standard", f"source: reference prior {name} starts from N(0, I) by definition"),
                        (self.residual != "none", f"residual: reference prior {name} is itself fitted (leave --residual out)"),
                        (self.init_from is not None, f"init_from: reference prior {name} is fitted, not fine-tuned")]
            for failed, message in problems:
                if failed:
                    raise ValueError(message)
            try:
                check_fit_options(name, self.model)
            except ReferenceFitError as err:
                raise ValueError(f"model: {err}") from None
        if self.residual == "gaussian" and self.prediction != "x1":
            raise ValueError("residual: gaussian adds the network's output to a Gaussian's x1-prediction; use --prediction x1")
        if self.residual == "gaussian" and not residual_fits_path(self.flow, self.sigma):
            raise ValueError(f"residual: gaussian is the closed-form x1-prediction of the straight path from N(0, I) with "
                             f"sigma 0 (icfm, otcfm, reflow), not of flow {self.flow} with sigma {self.sigma:g}")
        if self.init_normalization is not None and self.init_from is None:
            raise ValueError("init_normalization: only with init_from, the run to start from")
        if (self.source == "gaussian" and self.init_from is not None and self.init_normalization != "refit"
                and self.flow != "reflow"):  # reflow keeps its source's whitening: the same rows
            raise ValueError("source: gaussian fits its own whitening, and --init keeps the source run's normalization; "
                             "add --init-normalization refit (or leave --source out: a gaussian-source run passes its "
                             "whitening on)")
        if self.select_by == "samples" and self.flow == "reflow":
            raise ValueError("select_by: samples scores samples against real rows; reflow trains and validates on its "
                             "source's generated pairs (use select_by val_loss)")
        if (self.flow == "reflow") != (self.reflow_source is not None):
            raise ValueError("flow 'reflow' and reflow_source go together (use `scaleflow reflow RUN`)")
        if self.flow == "reflow" and self.aug:
            raise ValueError("aug: reflow trains on fixed (noise, sample) pairs, which augmentation would unpair")
        return self

    def run_name(self) -> str:
        return f"{self.arch}-{self.scale or 'default'}-{self.flow}"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)


def validation_message(err: ValidationError, where: str, model: Optional[type[BaseModel]] = None, kind: str = "option",
                       whole: str = "config") -> str:
    """pydantic's errors as one line: `WHERE: key: problem; key: problem` (unknown keys list the known
    fields of `model`, by default TrainConfig; `kind` names what a key is; `whole` names the file's own errors)."""
    model = model or TrainConfig
    problems = []
    for e in err.errors():
        option = ".".join(str(p) for p in e["loc"]) or whole
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = f"unknown {kind}; known: {', '.join(model.model_fields)}"
        if option == whole and re.match(r"^[a-z_]+: ", message):  # a whole-config rule naming its option itself
            problems.append(message)
            continue
        problems.append(f"{option}: {message}")
    return f"{where}{'; '.join(problems)}"


def read_yaml_mapping(path: str | Path, name: str, kind: str) -> Optional[dict]:
    """The mapping in YAML file `path` (None when empty); ConfigError naming the file otherwise.
    `name` and `kind` word the messages: "config file not found", "is a folder, not a YAML config file"."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {name} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a {kind}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected a {kind})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(loaded).__name__}")
    return loaded


def make_config(overrides: dict[str, Any] | None = None, yaml_path: str | Path | None = None) -> TrainConfig:
    """Resolve defaults <- YAML file <- overrides (None values in overrides mean "not given").

    Raises:
        ConfigError: one line naming the file/option and the problem.
    """
    values: dict[str, Any] = {}
    where = ""
    if yaml_path is not None:
        where = f"{yaml_path}: "
        values.update(read_yaml_mapping(yaml_path, "config file", "YAML config file") or {})
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "model" and isinstance(value, dict) and isinstance(values.get("model"), dict):
            value = {**values["model"], **value}  # --model-opt overrides the file's network options one by one
        values[key] = value
    try:
        return TrainConfig(**values)
    except ValidationError as err:
        raise ConfigError(validation_message(err, where)) from None
