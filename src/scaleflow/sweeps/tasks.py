"""What a sweep trial runs (`TASKS`). The `train` task: train one run with the trial's options, sample it,
score the samples against the held-out test split, and return everything a study compares. The `vit`
task (the optimizer scale study) is in `vit_task.py`.

A trial is a pure function of its options: its run folder is named by the trial's id, so a trial
killed mid-training resumes from its checkpoint (bit for bit) instead of starting again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scaleflow.evaluation.evaluate import METRICS, evaluate
from scaleflow.evaluation.scores import min_samples
from scaleflow.evaluation.weights import weight_statistics
from scaleflow.sampling.solvers import SOLVERS
from scaleflow.sweeps import vit_task
from scaleflow.sweeps.environment import peak_memory_mb, versions
from scaleflow.sweeps.records import trial_id
from scaleflow.files import read_json
from scaleflow.training.config import ConfigError, TrainConfig, make_config
from scaleflow.training.lock import RunFolderBusy
from scaleflow.training.recipes import apply_recipe
from scaleflow.training.run import load_run, resolve_device, train

# Sampling and evaluation options a trial takes besides the training ones, with their defaults.
# nfe_curve is off: it costs more than the evaluation itself and a study compares at one setting.
EVAL_OPTIONS: dict[str, Any] = {"solver": "heun", "sample_steps": 20, "noise_scale": 1.0, "n_eval": 0, "bootstrap": 100}
# Training options a trial may not set: the sweep owns the folder; a trial logs nowhere else.
RESERVED = frozenset({"out", "wandb", "wandb_project", "reflow_source"})
TRAIN_OPTIONS = frozenset(TrainConfig.model_fields) - RESERVED


def known_options(task: str = "train") -> list[str]:
    """Every option a trial of `task` takes, sorted (`train`: training and evaluation options)."""
    if task == "vit":
        return vit_task.known_options()
    return sorted(TRAIN_OPTIONS | set(EVAL_OPTIONS))


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's options as (training overrides, evaluation settings with defaults filled in).

    Raises:
        ConfigError: an option neither training nor evaluation knows, or a bad evaluation value.
    """
    unknown = sorted(set(options) - TRAIN_OPTIONS - set(EVAL_OPTIONS))
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: not an option of a train trial; known: {', '.join(known_options())}")
    settings = {**EVAL_OPTIONS, **{k: options[k] for k in EVAL_OPTIONS if k in options}}
    if settings["solver"] not in SOLVERS:
        raise ConfigError(f"solver: {settings['solver']!r} is not one of {', '.join(SOLVERS)}")
    for name in ("sample_steps", "bootstrap"):
        if not isinstance(settings[name], int) or isinstance(settings[name], bool) or settings[name] < 1:
            raise ConfigError(f"{name}: expected a whole number >= 1, got {settings[name]!r}")
    n = settings["n_eval"]
    if not isinstance(n, int) or isinstance(n, bool) or (n != 0 and n < min_samples()):
        raise ConfigError(f"n_eval: expected 0 (as many as the test split) or a whole number >= {min_samples()}, "
                          f"got {n!r}")
    scale = settings["noise_scale"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
        raise ConfigError(f"noise_scale: expected a number > 0, got {scale!r}")
    return {k: v for k, v in options.items() if k in TRAIN_OPTIONS}, settings


def check_trial(options: dict[str, Any], task: str = "train") -> None:
    """Validate a trial's options without running anything (ConfigError naming the option)."""
    if task == "vit":
        return vit_task.check_trial(options)
    train_options, _ = split_options(options)
    make_config(train_options)


def _metric_entries(report: dict) -> dict[str, dict]:
    """Each metric's entry (value, ci, floor, floor_ci, ...), lists kept as lists for JSON."""
    return {name: report[name] for name in METRICS if name in report}


def _check_same_training(config: TrainConfig, run_dir: Path) -> None:
    """A run folder found under the trial's name must hold this very training: the name hashes the
    options the trial gives, so a changed default (a newer scaleflow) would otherwise be re-scored
    silently as if it were the new one."""
    saved = make_config(yaml_path=run_dir / "config.yaml").model_dump(mode="json", exclude={"out"})
    recorded = read_json(run_dir / "model.json").get("recipe") if (run_dir / "model.json").exists() else None
    if recorded:  # the trial asks for the config before the data-size recipe; the folder holds it after
        config = apply_recipe(config, int(recorded["train_rows"]))[0]
    wanted = config.model_dump(mode="json", exclude={"out"})
    # "recipe" is how the values were chosen, not a value: a folder from before the option has none.
    differing = sorted(k for k in wanted if saved.get(k) != wanted[k] and k not in ("data", "texts", "recipe"))
    if differing:
        raise ConfigError(f"{run_dir}: trained with other values of {', '.join(differing)} than this trial resolves "
                          "(the defaults changed?); use another --runs folder")


def _train_once(config: TrainConfig, run_dir: Path, poll_seconds: float) -> tuple[dict, bool]:
    """The run's summary, training it unless it is trained already. Returns (summary, trained here).

    Trials that differ only in sampling share one run; when another worker is training it, wait for
    that training to end rather than train it twice."""
    while True:
        if (run_dir / "config.yaml").exists():
            _check_same_training(config, run_dir)
        if (run_dir / "summary.json").exists():
            return load_run(run_dir).summary, False
        resume = (run_dir / "config.yaml").exists()
        try:
            # A folder with a config but no summary is a trial killed mid-training: it resumes, bit for bit.
            return train(config, run_dir, resume=resume, progress=False), True
        except RunFolderBusy:
            time.sleep(poll_seconds)
        except ConfigError:
            if resume or not (run_dir / "config.yaml").exists():
                raise
            # Another worker started this training between our look and our start: look again.


@dataclass(frozen=True)
class TrainTask:
    """The `train` trial, bound to the folder its runs go in (picklable, for worker processes)."""

    runs: str  # folder holding one run folder per training configuration, named by its id
    poll_seconds: float = 2.0
    name = "train"
    default_metric = "worst_ratio"  # every measure at once, each against its real-vs-real floor
    per = "n_train"  # the winner is found at each data size
    table_columns = ("worst_ratio", "fd_ratio", "precision_ratio", "recall_ratio", "coverage_ratio", "validity_ratio",
                     "novelty_ratio")

    def __call__(self, options: dict[str, Any]) -> dict[str, Any]:
        """Train (unless another trial trained the same options), sample and score one trial.
        Returns its result record (JSON-ready)."""
        train_options, settings = split_options(options)
        run_dir = Path(self.runs) / trial_id(train_options)  # the training options alone name the run
        # A trial is what its spec says: the data-size recipe only where the spec asks for it (recipe: auto).
        config = make_config({"recipe": "none", **train_options, "out": str(run_dir)})
        summary, trained_here = _train_once(config, run_dir, self.poll_seconds)
        trained = time.perf_counter()
        device = resolve_device(config.device)
        run = load_run(run_dir, device=device)
        report, _ = evaluate(run, settings["n_eval"] or None, settings["solver"], settings["sample_steps"],
                             settings["bootstrap"], seed=config.seed, nfe_solvers=(), device=device,
                             noise_scale=settings["noise_scale"])
        return {
            "resolved": {**config.model_dump(mode="json", exclude={"out"}), **settings},
            "versions": versions(),
            "params": summary["params"],
            "train": {k: summary.get(k) for k in ("best_val_loss", "final_val_loss", "baseline_val_loss", "best_step",
                                                  "steps", "stopped_early", "loss_space", "wall_seconds",
                                                  "steps_per_second", "train_rows", "dim", "device")},
            "metrics": _metric_entries(report),
            # The reference priors on the same rows (fitted once per data and split, cached): a study's reference lines
            "reference": report.get("reference"),
            "eval_settings": report["settings"],
            "weights": weight_statistics(run.model)["by_layer_type"],
            "timing": {"train_seconds": round(summary["wall_seconds"], 2), "trained_here": trained_here,
                       "eval_seconds": round(time.perf_counter() - trained, 2),
                       "threads": torch.get_num_threads()},
            "memory": peak_memory_mb(device),
            "run_dir": str(run_dir),
        }


TASKS = {"train": TrainTask, "vit": vit_task.VitTask}
