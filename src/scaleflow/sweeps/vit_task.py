"""The `vit` sweep task (the optimizer scale study, design note 004): train one ViT classifier with one
optimizer at one scale, and record what the study compares: loss and accuracy on train / val / test,
the generalization gap, effective and stable rank per layer type, MLP activation sparsity, wall time,
steps/s, peak memory, and (with `checkpoints: K`) the same analysis at K points of training.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scaleflow.data.images import BUILTIN_SIZES, check_image_source, load_image_splits
from scaleflow.evaluation.activations import NEAR_ZERO, mlp_activation_sparsity
from scaleflow.evaluation.classification import classification_scores
from scaleflow.evaluation.weights import weight_statistics
from scaleflow.files import write_torch
from scaleflow.nets import CLASSIFIER_SCALES, count_parameters, create_model
from scaleflow.sweeps.environment import peak_memory_mb, versions
from scaleflow.sweeps.records import trial_id
from scaleflow.training.classifier import ClassifierSettings, checkpoint_steps, train_classifier, training_steps
from scaleflow.training.config import ConfigError, validation_message
from scaleflow.training.run import resolve_device
from scaleflow.training.scale_rules import BASE_LR, REFERENCE_BATCH, WEIGHT_DECAY, batch_size_for, scaled_lr
from scaleflow.training.signals import stop_on_signals
from scaleflow.training.optim import require_muon

logger = logging.getLogger(__name__)
Auto = Literal["auto"]
# The hidden matrices' layer types (Muon's share); their mean rank is the study's one rank number.
HIDDEN_TYPES = ("blocks.attn.q", "blocks.attn.k", "blocks.attn.v", "blocks.attn.out", "blocks.mlp.fc_in",
                "blocks.mlp.fc_out")


class VitTrialOptions(BaseModel):
    """A `vit` trial's options, validated in this one place; "auto" follows the note's rules."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field("digits", description="digits (built in), a CIFAR-10 folder, or an .npz")
    scale: Literal[CLASSIFIER_SCALES] = "tiny"  # type: ignore[valid-type]
    optimizer: Literal["sgd", "adamw", "muon"] = "adamw"
    epochs: int = Field(15, ge=1)
    batch_size: Union[Auto, int] = "auto"
    lr: Union[Auto, float] = "auto"
    aux_lr: Union[Auto, float] = "auto"
    lr_reference_batch: int = Field(REFERENCE_BATCH, ge=1)
    weight_decay: Union[Auto, float] = "auto"
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0)
    patch_size: int = Field(4, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    checkpoints: int = Field(0, ge=0)
    sparsity_threshold: float = Field(NEAR_ZERO, gt=0)
    analysis_rows: int = Field(512, ge=1)
    device: str = "auto"
    seed: int = 0

    def model_post_init(self, _context: Any) -> None:
        if self.optimizer == "muon":
            require_muon()
        if self.batch_size != "auto" and self.batch_size < 1:
            raise ValueError(f"batch_size: expected auto or a whole number >= 1, got {self.batch_size!r}")
        for name in ("lr", "aux_lr"):
            value = getattr(self, name)
            if value != "auto" and not value > 0:
                raise ValueError(f"{name}: expected auto or a number > 0, got {value!r}")
        if self.weight_decay != "auto" and self.weight_decay < 0:
            raise ValueError(f"weight_decay: expected auto or a number >= 0, got {self.weight_decay!r}")


def metric_columns() -> list[str]:
    """The numeric columns a `vit` trial always writes (per-layer-type ranks come on top): what --metric takes."""
    per_type = [f"{prefix}{key}.{kind}" for prefix in ("", "update_")
                for key in ("effective_rank", "effective_rank_ratio", "stable_rank")
                for kind in ("hidden", *HIDDEN_TYPES, "patch_embed", "head")]
    return [*(f"{split}_{k}" for split in ("train", "val", "test") for k in ("loss", "acc")), "gap_acc", "gap_loss",
            *per_type, "mlp_near_zero", "mlp_hoyer", "params", "batch_size_used", "lr_used", "steps", "steps_per_second",
            "train_seconds", "peak_rss_mb", "train_peak_rss_mb", "train_peak_cuda_mb"]


def known_options() -> list[str]:
    """Every option a `vit` trial takes, sorted."""
    return sorted(VitTrialOptions.model_fields)


def parse_options(options: dict[str, Any]) -> VitTrialOptions:
    """Validate a trial's options (ConfigError: one line naming the option)."""
    try:
        return VitTrialOptions(**options)
    except ValidationError as err:
        raise ConfigError(validation_message(err, "", VitTrialOptions, "option of a vit trial")) from None
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check_trial(options: dict[str, Any]) -> None:
    """Validate without running: the options, the device, and that the data source is there (not read)."""
    o = parse_options(options)
    check_image_source(o.data)
    resolve_device(o.device)
    if o.data in BUILTIN_SIZES and BUILTIN_SIZES[o.data] % o.patch_size:
        raise ConfigError(f"patch_size: {o.patch_size} does not divide the {BUILTIN_SIZES[o.data]}-pixel images of {o.data}")


def resolve_settings(o: VitTrialOptions, params: int, train_rows: int) -> ClassifierSettings:
    """The note's rules applied where an option says "auto": batch by parameter count (capped by the
    training rows), rates scaled by batch / lr_reference_batch, weight decay per optimizer."""
    batch = batch_size_for(params, train_rows) if o.batch_size == "auto" else min(o.batch_size, train_rows)
    lr = scaled_lr(o.optimizer, batch, o.lr_reference_batch) if o.lr == "auto" else float(o.lr)
    aux = scaled_lr("adamw", batch, o.lr_reference_batch) if o.aux_lr == "auto" else float(o.aux_lr)
    decay = WEIGHT_DECAY[o.optimizer] if o.weight_decay == "auto" else float(o.weight_decay)
    return ClassifierSettings(o.optimizer, o.epochs, batch, lr, aux if o.optimizer == "muon" else 0.0, decay,
                              o.warmup_fraction, o.label_smoothing, o.grad_clip, o.seed)


def _analysis(model, data, o: VitTrialOptions, device, initial: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Scores on every split, gaps, ranks per layer type of the weights and of their change from
    `initial`, MLP activation sparsity on held-out rows."""
    scores = {split: classification_scores(model, *(t.to(device) for t in data.split(split)))
              for split in ("train", "val", "test")}
    columns = {f"{split}_{key}": value for split, s in scores.items() for key, value in
               (("loss", s["loss"]), ("acc", s["accuracy"]))}
    columns["gap_acc"] = columns["train_acc"] - columns["test_acc"]
    columns["gap_loss"] = columns["test_loss"] - columns["train_loss"]
    out: dict[str, Any] = {"columns": columns}
    finite = all(torch.isfinite(p).all() for p in model.parameters())
    if not finite:  # a diverged run: nothing to decompose
        return out
    weights = weight_statistics(model)["by_layer_type"]
    updates = weight_statistics(model, initial)["by_layer_type"]
    out["weights"], out["updates"] = weights, updates
    for prefix, stats in (("", weights), ("update_", updates)):
        hidden = [stats[t] for t in HIDDEN_TYPES if t in stats]
        for key in ("effective_rank", "effective_rank_ratio", "stable_rank"):
            columns[f"{prefix}{key}.hidden"] = sum(w[key] for w in hidden) / len(hidden)
            for kind, w in stats.items():
                columns[f"{prefix}{key}.{kind}"] = w[key]
    held_out = data.test[0][: o.analysis_rows].to(device)
    activations = mlp_activation_sparsity(model, held_out, o.sparsity_threshold)
    out["activations"] = activations
    columns["mlp_near_zero"], columns["mlp_hoyer"] = activations["near_zero"], activations["hoyer"]
    return out


def _load_state(path: Optional[Path], settings: ClassifierSettings) -> Optional[dict]:
    """The saved state of this trial's training, if any and made with these very settings."""
    if path is None or not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn or foreign file: the training starts again rather than fail
        logger.warning("%s: unreadable (%s); the trial starts from the beginning", path, type(err).__name__)
        return None
    if state.get("settings") != asdict(settings):
        logger.warning("%s: saved with other settings; the trial starts from the beginning", path)
        return None
    return state


def run_vit_trial(options: dict[str, Any], state_dir: Optional[str | Path] = None,
                  save_every: float = 60.0) -> dict[str, Any]:
    """Train and analyse one ViT trial; its result record (JSON-ready).

    With `state_dir`, the training's state is saved there (`state.pt`) every `save_every` seconds and on
    SIGTERM / Ctrl-C, a rerun continues from it (the same result as without the stop), and the file is
    removed once the trial is done.
    """
    o = parse_options(options)
    device = resolve_device(o.device)
    data = load_image_splits(o.data, seed=o.seed, val_fraction=o.val_fraction)
    if data.image_size % o.patch_size:
        raise ConfigError(f"patch_size: {o.patch_size} does not divide the {data.image_size}-pixel images of {o.data}")
    torch.manual_seed(o.seed)
    model = create_model("vit", o.scale, image_size=data.image_size, patch_size=o.patch_size,
                         channels=data.channels, num_classes=data.num_classes).to(device)
    params = count_parameters(model)
    settings = resolve_settings(o, params, len(data.train[1]))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    initial = {name: p.detach().clone() for name, p in model.named_parameters() if p.dim() == 2}
    analyse = lambda step: _analysis(model, data, o, device, initial)  # noqa: E731
    state_path = Path(state_dir) / "state.pt" if state_dir is not None else None
    state = _load_state(state_path, settings)

    def save(snapshot: dict) -> None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        write_torch(state_path, snapshot)

    started = time.perf_counter()
    with stop_on_signals() as stop:
        history = train_classifier(model, data, settings, device, checkpoint_steps(training_steps(len(data.train[1]), settings), o.checkpoints), analyse,
                                   state=state, save_state=save if state_path is not None else None,
                                   save_every=save_every, stop=stop)
    memory = peak_memory_mb(device)  # training's peak (with any checkpoint analyses), before the final analysis
    last = history["checkpoints"][-1] if history["checkpoints"] else None
    if history["diverged"]:  # no scores, ranks or sparsity of a model that diverged: NaN, left out of every comparison
        analysis = {"columns": {f"{split}_{k}": math.nan for split in ("train", "val", "test") for k in ("loss", "acc")}}
        analysis["columns"].update(gap_acc=math.nan, gap_loss=math.nan)
    elif last and last["step"] == history["steps"]:
        analysis = last  # the last checkpoint is the trained model itself: its analysis is not done twice
    else:
        analysis = _analysis(model, data, o, device, initial)
    columns = {**analysis["columns"], "params": params, "batch_size_used": settings.batch_size,
               "lr_used": settings.lr, "steps": history["steps"], "steps_per_second": history["steps_per_second"],
               "train_seconds": round(history["wall_seconds"], 3), "diverged": history["diverged"],
               **{f"train_{k}": v for k, v in memory.items()}}
    resolved = {**o.model_dump(), "batch_size": settings.batch_size, "lr": settings.lr,
                "aux_lr": settings.aux_lr if o.optimizer == "muon" else None, "weight_decay": settings.weight_decay}
    return {
        "resolved": resolved,
        "versions": versions(),
        "params": params,
        "columns": columns,
        "labels": {"scale": o.scale, "optimizer": o.optimizer},  # in every row, also when left at their defaults
        "lr_groups": history["lr_groups"],
        "rules": {"base_lr": BASE_LR[o.optimizer], "lr_reference_batch": o.lr_reference_batch,
                  "batch_rule": o.batch_size == "auto", "lr_rule": o.lr == "auto"},
        "train": {k: history[k] for k in ("steps", "steps_per_epoch", "epochs", "steps_per_second", "diverged",
                                          "diverged_at_step", "epoch_train_loss")},
        "weights": analysis.get("weights", {}),
        "updates": analysis.get("updates", {}),
        "activations": analysis.get("activations"),
        "checkpoints": [{"step": c["step"], "epoch": c["epoch"], "columns": c["columns"]} for c in history["checkpoints"]],
        "data": {"name": data.name, **data.meta, "image_size": data.image_size, "channels": data.channels,
                 "num_classes": data.num_classes},
        "timing": {"train_seconds": round(history["wall_seconds"], 2),
                   "trial_seconds": round(time.perf_counter() - started, 2), "threads": torch.get_num_threads()},
        "memory": memory,
        "device": str(device),
        **({"resumed_at_step": history["resumed_at_step"]} if history["resumed_at_step"] is not None else {}),
    }


@dataclass(frozen=True)
class VitTask:
    """The `vit` trial (picklable, for worker processes). While it trains, `runs/<trial id>/state.pt`
    holds its state (saved every minute and on SIGTERM / Ctrl-C): a killed sweep's rerun continues the
    trial from there; the folder is removed when the trial is done."""

    runs: str = ""  # the sweep's runs folder; "" keeps no state
    save_every: float = 60.0  # seconds of training between saved states
    name = "vit"
    default_metric = "test_acc"
    per = "scale"  # the winner (best optimizer) is found at each scale
    table_columns = ("test_acc", "gap_acc", "effective_rank_ratio.hidden", "update_effective_rank_ratio.hidden",
                     "mlp_near_zero", "steps_per_second", "peak_rss_mb")

    def __call__(self, options: dict[str, Any]) -> dict[str, Any]:
        if not self.runs:
            return run_vit_trial(options)
        folder = Path(self.runs) / trial_id(options)
        result = run_vit_trial(options, folder, self.save_every)
        shutil.rmtree(folder, ignore_errors=True)  # the record holds everything; the state was only for resuming
        return result
