"""A training run as a pure function of its config, and its folder read back as a `Run`.

Run folder:
    config.yaml            the resolved TrainConfig (reproduces the run)
    model.json             arch, scale, resolved network config, prediction, flow, input_dim, params
    splits.json            row indices of train/val/test into the data file
    normalization.safetensors  per-dimension mean/std of the training rows
    model.safetensors      raw weights at the best validation loss
    ema.safetensors        EMA weights at the best validation loss (sampled by default)
    checkpoints/last.pt    everything needed to resume (weights, EMA, optimizer, schedule, state)
    metrics.jsonl          training and validation records
    summary.json           best_val_loss, baseline_val_loss, steps, params, wall_seconds, ...
    .lock                  held (flock) by the process training the folder; who it is
    reflow_pairs.safetensors   reflow runs: training pairs x0/x1 and held-out pairs val_x0/val_x1
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from scaleflow.data.errors import DataError
from scaleflow.data.loading import check_dimension
from scaleflow.data.normalization import Standardizer, Whitener, normalization_from_tensors
from scaleflow.data.prepare import PreparedData, prepare_data, restandardize
from scaleflow.data.splits import Splits
from scaleflow.flows.base import Flow
from scaleflow.flows.registry import create_flow
from scaleflow.flows.time_sampling import make_time_sampler
from scaleflow.nets import count_parameters, create_model
from scaleflow.nets.gaussian_residual import (GaussianResidual, fit_gaussian_residual, plateau_record,
                                              unfitted_gaussian_residual)
from scaleflow.sampling.velocity import VelocityField
from scaleflow.training.config import ConfigError, TrainConfig, make_config
from scaleflow.files import read_json, read_safetensors, write_json, write_safetensors, write_text
from scaleflow.training.lock import check_not_busy, run_lock
from scaleflow.training.logger import MetricsLogger, require_wandb
from scaleflow.training.optim import require_muon
from scaleflow.training.recipes import apply_recipe
from scaleflow.training.recipes import describe as describe_recipe
from scaleflow.training.signals import stop_on_signals
from scaleflow.training.trainer import Trainer
from scaleflow.training.transfer import check_transfer_source, initialize_from


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; anything else as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name} was asked for but CUDA is not available here; use --device cpu")
    return device


def build_flow(config: TrainConfig) -> Flow:
    """The config's flow with its time sampler (reflow trains on fixed pairs along the straight path)."""
    kwargs = {"sigma": config.sigma, "time_sampler": make_time_sampler(config.time_sampling)}
    if config.flow == "otcfm":
        kwargs["method"] = config.ot_method
    return create_flow(config.flow, **kwargs)


class ModelOptionError(ConfigError):
    """The network options (`model:` in a config, `--model-opt`) do not make a network; the CLI names where they came from."""


def build_model(config: TrainConfig, input_dim: int) -> nn.Module:
    try:
        return create_model(config.arch, config.scale, **{**config.model, "input_dim": input_dim})
    except (ValueError, TypeError) as err:
        raise ModelOptionError(f"model: {' '.join(str(err).split())}") from None


REFLOW_PAIRS = "reflow_pairs.safetensors"
CHECKPOINT = Path("checkpoints") / "last.pt"


def _load_reflow_pairs(run_dir: Path, dim: int, device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Reflow's pairs and how they were drawn (the file's metadata): x0, x1 `[N, D]` to train on and
    val_x0, val_x1 `[M, D]` to validate on (pairs files from before held-out pairs lack these: such a run
    validates on the data's validation rows)."""
    path = run_dir / REFLOW_PAIRS
    if not path.exists():
        raise ConfigError(f"{run_dir}: flow 'reflow' trains on {REFLOW_PAIRS}, which is missing; make it with `scaleflow reflow RUN`")
    pairs = read_safetensors(path)
    shapes = {k: tuple(v.shape) for k, v in pairs.items()}
    fits = (set(pairs) in ({"x0", "x1"}, {"x0", "x1", "val_x0", "val_x1"})
            and all(len(shape) == 2 and shape[1] == dim for shape in shapes.values())
            and shapes["x0"] == shapes["x1"] and shapes.get("val_x0") == shapes.get("val_x1"))
    if not fits:
        raise ConfigError(f"{path}: expected x0 and x1 (and val_x0 and val_x1) pairwise of one shape [N, {dim}], "
                          f"found {shapes}")
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata() or {}
    return {k: v.to(device) for k, v in pairs.items()}, metadata


def _scoring_maps(data: PreparedData, normalization) -> dict:
    """The Trainer's `to_original` and `to_scoring` (select_by "samples" scores where `eval` does): for a run
    trained in its own per-dimension space, that space; else the per-dimension standardization of its rows."""
    if normalization is None:
        return {"to_original": data.standardizer.inverse_transform, "to_scoring": None}
    scoring = scoring_standardizer(normalization, data.train)
    return {"to_original": scoring.inverse_transform,
            "to_scoring": lambda x: scoring.transform(normalization.inverse_transform(x))}


def scoring_standardizer(normalization, train_rows: torch.Tensor) -> Standardizer:
    """The per-dimension standardization of a run's training rows `[N, D]` given in its `normalization`: the
    space sample measures are read in for a run that trains in another (`_own_normalization`)."""
    return Standardizer.fit(normalization.inverse_transform(train_rows))


def _keeps_source_normalization(config: TrainConfig) -> bool:
    return bool(config.init_from) and config.init_normalization != "refit"


def _own_normalization(config: TrainConfig) -> bool:
    """Whether the run trains in a normalization other than its rows' per-dimension one: a transferred run's
    source's (unless refit), or a whitening (`source: gaussian`)."""
    return _keeps_source_normalization(config) or config.source == "gaussian"


def _run_normalization(config: TrainConfig, run_dir: Path, resume: bool, data: PreparedData):
    """The normalization a run trains in when it is not the per-dimension one `prepare_data` fitted
    (`_own_normalization`); None otherwise. A resumed run reads what it saved (its source may be gone)."""
    if not _own_normalization(config):
        return None
    saved = run_dir / "normalization.safetensors"
    if resume and saved.exists():
        return normalization_from_tensors(read_safetensors(saved))
    if _keeps_source_normalization(config) and config.init_from is not None:
        return normalization_from_tensors(read_safetensors(Path(config.init_from) / "normalization.safetensors"))
    return Whitener.fit(data.standardizer.inverse_transform(data.train))


def _check_folder(run_dir: Path, resume: bool) -> None:
    """A new run needs a folder without one; a resumed run needs the folder's config (a checkpoint is optional)."""
    if resume and not (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir}: nothing to resume (no config.yaml)")
    if not resume and (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir}: already holds a run; use --resume to continue it or choose another --out")


def train(config: TrainConfig, run_dir: Optional[str | Path] = None, resume: bool = False, progress: bool = True,
          on_step: Optional[Callable[[int], None]] = None, data: Optional[PreparedData] = None,
          on_start: Optional[Callable[[], None]] = None) -> dict:
    """Train one run and write its folder. Returns the summary (also in `summary.json`).

    One process at a time trains a folder (`lock.run_lock`; a second is refused). SIGTERM and Ctrl-C
    stop training with a checkpoint of the step it was in and raise `signals.TrainingInterrupted`.

    Args:
        config: the validated configuration; the run is a function of it and its data file.
        run_dir: defaults to `config.out` or `runs/<arch>-<scale>-<flow>`.
        resume: continue from `run_dir/checkpoints/last.pt`; a run stopped before its first checkpoint
            starts again from step 0. Either way it ends with the weights of an uninterrupted run, bit
            for bit (the folder's config must match).
        data: already prepared data (sweeps share one load); must come from the same config.
        on_start: called once every check has passed and the folder is held, just before training.
    """
    run_dir = Path(run_dir or config.out or Path("runs") / config.run_name())
    # The run's config names its data by absolute path: `eval` and `sample` work from any folder.
    config = config.model_copy(update={
        key: str(Path(value).expanduser().resolve())
        for key in ("data", "texts", "init_from") if (value := getattr(config, key)) is not None and value != "builtin"
    })
    last = run_dir / CHECKPOINT
    # Every check before the first write: a refused run leaves no folder and touches none.
    if config.optimizer == "muon":  # at training only: a Muon run's folder stays readable on any torch
        try:
            require_muon()
        except ValueError as err:
            raise ConfigError(str(err)) from None
    check_not_busy(run_dir)
    _check_folder(run_dir, resume)
    device = resolve_device(config.device)
    if config.wandb:
        require_wandb()
    # A run killed while writing its header may lack splits.json; its config makes the same splits again.
    splits = _read_splits(run_dir) if resume and (last.exists() or (run_dir / "splits.json").exists()) else None
    data = data or prepare_data(config.data, config.texts, config.n_train, config.n_val, config.n_test,
                                config.dedup, config.dedup_threshold, config.seed, splits=splits,
                                categories=config.categories)
    # The data-size recipe (training/recipes.py) fills the options the user left unset; a resumed run's
    # config.yaml sets every option, so it keeps what its first start chose.
    config, recipe = apply_recipe(config, len(data.train))
    if config.init_from == "builtin":  # the prior pretrained on the built-in data (trained once, cached)
        from scaleflow.training.pretrained import builtin_prior, check_builtin_transfer

        check_builtin_transfer(config, data.dim)  # before the pretraining: a dimension that cannot transfer
        config = config.model_copy(update={"init_from": str(builtin_prior(config, progress))})
    torch.manual_seed(config.seed)  # after any pretraining, which seeds the global generator itself
    if config.is_reference:
        return _fit_reference_run(config, run_dir, data, on_start, resume)
    pairs: dict[str, torch.Tensor] = {}
    train_rows, val_rows, pairs_info = data.train.to(device), data.val.to(device), None
    if config.flow == "reflow":
        pairs, pairs_info = _load_reflow_pairs(run_dir, data.dim, device)
        train_rows, val_rows = pairs["x1"], pairs.get("val_x1", val_rows)
    model = build_model(config, data.dim)
    transfer = None
    if config.init_from:  # a resumed run keeps the provenance it recorded (its source may be gone since)
        recorded = read_json(run_dir / "model.json").get("init_from") if resume and (run_dir / "model.json").exists() else None
        transfer = recorded or check_transfer_source(config, model, data.dim)
    if resume and (run_dir / "model.json").exists():  # what its first start chose (its config now sets every option)
        recipe = read_json(run_dir / "model.json").get("recipe")
    normalization = _run_normalization(config, run_dir, resume, data)
    if normalization is not None:
        data = restandardize(data, normalization)
        train_rows, val_rows = data.train.to(device), data.val.to(device)
        if config.flow == "reflow":
            train_rows, val_rows = pairs["x1"], pairs.get("val_x1", val_rows)
    if config.residual == "gaussian":  # fitted to the rows in the space the network sees
        model = GaussianResidual(model, fit_gaussian_residual(data.train))
    if config.init_from and not (resume and last.exists()):  # a restart (no checkpoint yet) starts where the first did
        initialize_from(model, config.init_from)
    flow = build_flow(config)
    with run_lock(run_dir):
        _check_folder(run_dir, resume)  # again: another process may have changed the folder meanwhile
        continuing = resume and last.exists()
        metrics = MetricsLogger(run_dir, config.wandb_project if config.wandb else None, config.model_dump(), resume)
        if not continuing:  # a restart writes the same header again, whole
            _write_run_header(run_dir, config, model, data, pairs_info, transfer, recipe)
            if recipe is not None and not resume:  # once, when it is chosen
                print(describe_recipe(recipe), file=sys.stderr)
        try:
            with stop_on_signals() as stop:
                trainer = Trainer(config, model, flow, train_rows, val_rows, run_dir, pairs.get("x0"), on_step,
                                  progress, metrics, val_x0=pairs.get("val_x0"), stop=stop,
                                  **_scoring_maps(data, normalization))
                if continuing:
                    trainer.load_checkpoint(last)
                metrics.drop_after(trainer.state.step)  # the steps after the checkpoint are replayed and logged again
                if on_start is not None:
                    on_start()
                state = trainer.fit()
        finally:
            metrics.close()
        summary = {
            "best_val_loss": state.best_val_loss,  # with select_by "samples": at the step the samples chose
            "best_step": state.best_step,
            "selected_by": config.select_by,
            **({"best_val_worst_ratio": state.best_score} if config.select_by == "samples" else {}),
            "baseline_val_loss": trainer.validation.baseline_loss,
            "final_val_loss": state.history[-1]["val_loss"] if state.history else None,
            "loss_space": config.prediction,
            "val_on": "reflow pairs" if "val_x0" in pairs else "validation rows",
            "steps": state.step,
            "stopped_early": state.step < config.steps,
            "params": count_parameters(model),
            "wall_seconds": state.wall_seconds,
            "steps_per_second": state.step / max(state.wall_seconds, 1e-9),
            "train_rows": len(train_rows),
            "dim": data.dim,
            "device": str(device),
            "autocast": str(trainer.autocast).removeprefix("torch.") if trainer.autocast else "fp32",
            **({"init_from": transfer} if transfer else {}),
            **({"recipe": recipe} if recipe else {}),
            **(plateau_record([r.get("val_worst_ratio") for r in state.history], state.best_score)
               if config.residual == "gaussian" and config.select_by == "samples" else {}),
        }
        write_json(run_dir / "summary.json", summary)
    return summary


def _fit_reference_run(config: TrainConfig, run_dir: Path, data: PreparedData,
                       on_start: Optional[Callable[[], None]], resume: bool) -> dict:
    """A reference prior's run (`scaleflow.reference`): fitted to the training rows, its one setting chosen
    on the validation rows, written as any run folder (weights in both model and ema files). Deterministic
    in the config and data, so `--resume` fits it again."""
    from scaleflow.evaluation.evaluate import heldout_loss_per_row
    from scaleflow.flows.draws import validation_coupling_batch
    from scaleflow.reference import ReferenceFitError, fit_reference

    if on_start is not None:
        on_start()
    try:  # before the folder is made: a fit that fails leaves nothing behind
        fitted = fit_reference(config.arch, data.train, data.val, config.model, config.seed,
                               data.standardizer.inverse_transform)
    except (ReferenceFitError, ValueError, np.linalg.LinAlgError) as err:  # e.g. more components than rows
        raise ConfigError(f"model: {config.arch} could not be fitted to these rows: {' '.join(str(err).split())}") from None
    with run_lock(run_dir):
        _check_folder(run_dir, resume)  # again: another process may have changed the folder meanwhile
        model = fitted.model
        _write_run_header(run_dir, config, model, data)
        for name in ("model.safetensors", "ema.safetensors"):
            write_safetensors(run_dir / name, model.state_dict())
        # The flow-matching loss of the exact denoiser on the trainer's validation draws: comparable with trained runs'.
        losses, baseline = heldout_loss_per_row(model, build_flow(config), data.val, config.prediction, config.seed,
                                                validation_coupling_batch(config.batch_size, len(data.train)))
        val_loss = float(losses.mean())
        summary = {
            "best_val_loss": val_loss, "best_step": 0, "baseline_val_loss": baseline,
            "final_val_loss": val_loss, "loss_space": config.prediction, "val_on": "validation rows",
            "steps": 0, "stopped_early": False, "params": count_parameters(model), "wall_seconds": fitted.seconds,
            "steps_per_second": None, "train_rows": len(data.train), "dim": data.dim, "device": "cpu",
            "autocast": "fp32", "reference": {"prior": config.arch, "chosen": fitted.chosen,
                                              "val_log_likelihood": fitted.val_log_likelihood,
                                              "candidates": fitted.records},
        }
        write_json(run_dir / "summary.json", summary)
    return summary


def _write_run_header(run_dir: Path, config: TrainConfig, model: nn.Module, data: PreparedData,
                      reflow_pairs: Optional[dict[str, str]] = None, transfer: Optional[dict] = None,
                      recipe: Optional[dict] = None) -> None:
    """Everything that describes the run before its first step, so even a crashed run can be read."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", config.to_yaml())
    write_json(run_dir / "splits.json", data.splits.to_dict())
    write_safetensors(run_dir / "normalization.safetensors", data.standardizer.to_tensors())
    write_json(run_dir / "model.json", {
        "arch": config.arch, "scale": config.scale, "config": model.config, "input_dim": data.dim,
        "prediction": config.prediction, "flow": config.flow, "params": count_parameters(model),
        **({"residual": config.residual} if config.residual != "none" else {}),
        "data_source": data.source, **({"reflow_pairs": reflow_pairs} if reflow_pairs is not None else {}),
        **({"init_from": transfer} if transfer is not None else {}),
        **({"recipe": recipe} if recipe is not None else {}),
    })


@dataclass
class Run:
    """A trained run read back from its folder (like `from_pretrained`)."""

    path: Path
    config: TrainConfig
    model: nn.Module
    flow: Flow
    standardizer: Standardizer | Whitener  # per-dimension, or a Gaussian's whitening (`source: gaussian`)
    splits: Splits
    summary: dict
    info: dict

    @property
    def velocity(self) -> VelocityField:
        """The network as a velocity field `v(x: [B, D], t: [B])` in the normalized space."""
        return VelocityField(self.model, self.flow, self.config.prediction)

    def sample(self, n: int, solver: str = "heun", steps: int = 20, seed: int = 0, noise_scale: float = 1.0,
               batch_size: int = 4096, project_sphere: bool = False) -> torch.Tensor:
        """`[n, D]` float32 samples of the prior in the original embedding space (as `scaleflow sample` draws them:
        noise `seed`, `solver` with `steps` fixed steps, `noise_scale` the starting noise's temperature;
        `project_sphere`: on the training rows' sphere, `sampling.sphere`)."""
        from scaleflow.sampling.sample import generate
        from scaleflow.sampling.sphere import project_to_sphere, sphere_radius

        device = next(self.model.parameters(), torch.empty(0)).device
        batch = generate(self.velocity, n, int(self.info["input_dim"]), solver, steps, seed, device, batch_size,
                         noise_scale=noise_scale)
        samples = self.standardizer.inverse_transform(batch.x).float().cpu()
        if project_sphere:
            radius = sphere_radius(self.standardizer.inverse_transform(self.data().train))
            if radius is None:
                raise ValueError(f"project_sphere: {self.path}'s training rows do not share one norm")
            samples = project_to_sphere(samples, radius)
        return samples

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """`[N]` float64 log-density of original-space points `x: [N, D]` under the prior: exact where the prior
        has one in closed form (Gaussian, GMM, KDE reference priors), else the flow's instantaneous change of
        variables (`search.log_density`: exact divergence up to D = 1024, Hutchinson above)."""
        from scaleflow.search.log_density import prior_log_density

        return prior_log_density(self, x)

    def scoring_normalization(self, data: PreparedData) -> Optional[Standardizer]:
        """The per-dimension standardization of the run's training rows (`data`: its `data()`), where the run
        trains in another space (a whitening, a source's statistics); None where it is the run's own.
        Evaluation scores samples in it, so every run's measures (FD, PRDC, memorization) are read in one
        space, whatever the run trained in."""
        return scoring_standardizer(self.standardizer, data.train) if _own_normalization(self.config) else None

    def data(self) -> PreparedData:
        """The run's train/val/test rows, re-read from its data file with its own splits."""
        data = prepare_data(self.config.data, self.config.texts, splits=self.splits)
        check_dimension(data.train, self.info["input_dim"], what=f"run {self.path}")
        if _keeps_source_normalization(self.config):  # a source's statistics: nothing of these rows to check
            return restandardize(data, self.standardizer)
        own, fitted = self.standardizer, data.standardizer
        assert isinstance(fitted, Standardizer)  # prepare_data fits a per-dimension one
        whitened = isinstance(own, Whitener)  # `source: gaussian`: the mean is the rows' own, the std is not kept
        if not (np.allclose(fitted.mean, own.mean, atol=1e-5)
                and (isinstance(own, Whitener) or np.allclose(fitted.std, own.std, atol=1e-5))):
            raise DataError(f"{self.config.data}: its training rows are not the ones run {self.path} was trained on "
                            "(the file changed); evaluate with the original file")
        return restandardize(data, self.standardizer) if whitened else data


def _read_splits(run_dir: Path) -> Splits:
    record = read_json(run_dir / "splits.json")  # names the file itself when unreadable
    try:
        return Splits.from_dict(record)
    except (DataError, ValueError, TypeError) as err:
        raise ConfigError(f"{run_dir / 'splits.json'}: {err}") from None


def load_run(path: str | Path, weights: str = "ema", device: str | torch.device = "cpu") -> Run:
    """Rebuild a run's network (EMA weights by default, or "model" for the raw ones) in eval mode."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run folder")
    if not (path / "model.json").exists():
        raise ConfigError(f"{path}: not a scaleflow run folder (no model.json)")
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model'; got {weights!r}")
    weights_file = path / f"{weights}.safetensors"
    if not weights_file.exists():
        raise ConfigError(f"{path}: has no {weights_file.name} yet (the run has not validated once)")
    info = read_json(path / "model.json")
    if not {"arch", "config", "input_dim"} <= set(info):
        raise ConfigError(f"{path / 'model.json'}: expected the keys arch, config and input_dim, found {sorted(info)}")
    config = make_config(yaml_path=path / "config.yaml")
    model = create_model(info["arch"], **info["config"])
    if config.residual == "gaussian":
        model = GaussianResidual(model, unfitted_gaussian_residual(int(info["input_dim"])))
    try:
        model.load_state_dict(read_safetensors(weights_file))
    except RuntimeError as err:
        problem = [line.strip() for line in str(err).splitlines() if line.strip()][-1]
        raise ConfigError(f"{weights_file}: does not fit the network model.json describes ({problem[:300]})") from None
    model.to(device).eval().requires_grad_(False)
    statistics = read_safetensors(path / "normalization.safetensors")
    shapes = {k: tuple(v.shape) for k, v in statistics.items()}
    d = info["input_dim"]
    if shapes not in ({"mean": (d,), "std": (d,)}, {"mean": (d,), "whitening": (d, d), "coloring": (d, d)}):
        raise ConfigError(f"{path / 'normalization.safetensors'}: expected mean and std of {d} values (or a "
                          f"{d} x {d} whitening and coloring: the network's input), found {shapes}")
    summary_file = path / "summary.json"
    return Run(
        path=path, config=config, model=model, flow=build_flow(config),
        standardizer=normalization_from_tensors(statistics),
        splits=_read_splits(path),
        summary=read_json(summary_file) if summary_file.exists() else {},
        info=info,
    )
