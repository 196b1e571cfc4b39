"""`scaleflow train`: train a velocity network on embeddings; every option overrides --config."""
from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.console import Console

from scaleflow.cli.errors import user_errors
from scaleflow.training.config import TRAINING_ONLY, ConfigError, TrainConfig, make_config
from scaleflow.training.run import ModelOptionError
from scaleflow.training.run import train as run_training

_F = TrainConfig.model_fields


def _help(name: str) -> str:
    field = _F[name]
    return f"{field.description or name} [default: {field.default if field.default_factory is None else '{}'}]"


def parse_model_options(pairs: list[str]) -> dict:
    """`["hidden_dim=512", "hidden_dims=[256,128]"]` -> `{"hidden_dim": 512, "hidden_dims": [256, 128]}`."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-opt {pair!r}: expected KEY=VALUE, e.g. --model-opt hidden_dim=512")
        options[key.strip()] = yaml.safe_load(value)
    return options


def _flag_names(err: ConfigError) -> ConfigError:
    """A config error about `init_from` / `init_normalization` named as the user typed it (`--init`, ...)."""
    text = str(err)
    for key, flag in (("init_normalization", "--init-normalization"), ("init_from", "--init"),
                      ("select_by", "--select-by")):
        text = re.sub(rf"(?<![-\w]){key}\b", flag, text)
    return ConfigError(text)


@user_errors
def train(
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of options; command-line options override it."),
    data: Optional[str] = typer.Option(None, help=_help("data")),
    texts: Optional[str] = typer.Option(None, help=_help("texts")),
    n_train: Optional[int] = typer.Option(None, help=_help("n_train")),
    n_val: Optional[float] = typer.Option(None, help=_help("n_val") + " (a value >= 1 is a count)"),
    n_test: Optional[float] = typer.Option(None, help=_help("n_test") + " (a value >= 1 is a count)"),
    categories: Optional[str] = typer.Option(None, "--categories", help=_help("categories")),
    dedup: Optional[bool] = typer.Option(None, "--dedup/--no-dedup", help=_help("dedup")),
    dedup_threshold: Optional[float] = typer.Option(None, help=_help("dedup_threshold")),
    arch: Optional[str] = typer.Option(None, help="velocity network: mlp | dit | unet | mamba, or a reference prior "
                                       "(fitted, not trained): gaussian | gmm | kde | closed-form [default: dit]"),
    scale: Optional[str] = typer.Option(None, help=_help("scale")),
    model_opt: list[str] = typer.Option([], "--model-opt", help="network option KEY=VALUE overriding the scale (repeatable)"),
    prediction: Optional[str] = typer.Option(None, help=_help("prediction") + ": velocity | x1"),
    flow: Optional[str] = typer.Option(None, help=_help("flow") + ": icfm | otcfm | si-gvp"),
    sigma: Optional[float] = typer.Option(None, help=_help("sigma")),
    ot_method: Optional[str] = typer.Option(None, help=_help("ot_method") + ": exact | sinkhorn"),
    time_sampling: Optional[str] = typer.Option(None, help=_help("time_sampling") + ": uniform | logit-normal"),
    source: Optional[str] = typer.Option(None, "--source", help=_help("source") + ": standard | gaussian"),
    residual: Optional[str] = typer.Option(None, "--residual", help=_help("residual") + ": none | gaussian"),
    aug: Optional[str] = typer.Option(None, "--aug", help=_help("aug")),
    steps: Optional[int] = typer.Option(None, help=_help("steps")),
    batch_size: Optional[int] = typer.Option(None, help=_help("batch_size")),
    optimizer: Optional[str] = typer.Option(None, help=_help("optimizer")),
    lr: Optional[float] = typer.Option(None, help=_help("lr")),
    weight_decay: Optional[float] = typer.Option(None, help=_help("weight_decay")),
    warmup_steps: Optional[int] = typer.Option(None, help=_help("warmup_steps")),
    grad_clip: Optional[float] = typer.Option(None, help=_help("grad_clip")),
    ema_decay: Optional[float] = typer.Option(None, help=_help("ema_decay")),
    val_every: Optional[int] = typer.Option(None, help=_help("val_every")),
    patience: Optional[int] = typer.Option(None, help=_help("patience")),
    min_steps: Optional[int] = typer.Option(None, help=_help("min_steps")),
    select_by: Optional[str] = typer.Option(None, "--select-by", help=_help("select_by") + ": val_loss | samples"),
    checkpoint_every: Optional[int] = typer.Option(None, help=_help("checkpoint_every")),
    log_every: Optional[int] = typer.Option(None, help=_help("log_every")),
    precision: Optional[str] = typer.Option(None, help=_help("precision") + ": auto | fp32 | bf16"),
    seed: Optional[int] = typer.Option(None, help=_help("seed")),
    device: Optional[str] = typer.Option(None, help=_help("device")),
    out: Optional[str] = typer.Option(None, "--out", help=_help("out")),
    init: Optional[str] = typer.Option(None, "--init", help="start from this run's weights (same network and "
                                       "embedding dimension) and fine-tune with this run's schedule; 'builtin': a prior "
                                       "pretrained on the built-in data (384-D MiniLM), trained once and cached"),
    init_normalization: Optional[str] = typer.Option(None, "--init-normalization", help=_help("init_normalization") + ": source | refit"),
    recipe: Optional[str] = typer.Option(None, "--recipe", help=_help("recipe") + ": auto | none"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint (from step 0 if it stopped before one)"),
    wandb: Optional[bool] = typer.Option(None, "--wandb/--no-wandb", help=_help("wandb")),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Train a velocity network on embeddings and write a run folder (config, weights, metrics, summary)."""
    options = {k: v for k, v in locals().items() if k not in ("config", "model_opt", "resume", "quiet", "init")}
    options["init_from"] = init
    for key in ("n_val", "n_test"):  # 200 means 200 rows, 0.1 means 10%
        if options[key] is not None and options[key] >= 1 and float(options[key]).is_integer():
            options[key] = int(options[key])
    if model_opt:
        options["model"] = parse_model_options(model_opt)
    settings_file = config  # where `model:` options may come from, for messages
    if resume:
        if out is None:
            raise ConfigError("--resume needs --out RUN_FOLDER")
        saved = Path(out) / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"{out}: nothing to resume (no config.yaml)")
        given = [k for k, v in options.items() if v is not None and k != "out"] + (["config"] if config else [])
        if given:
            flags = ", ".join({"model": "--model-opt", "init_from": "--init"}.get(k, "--" + k.replace("_", "-")) for k in given)
            raise ConfigError(f"--resume continues {out} with its own config; drop {flags}")
        cfg, settings_file = make_config(yaml_path=saved), saved
    else:
        try:
            cfg = make_config(options, yaml_path=config)
        except ConfigError as err:
            raise _flag_names(err) from None
        trained = sorted(k for k in TRAINING_ONLY if options.get(k) is not None)
        if cfg.is_reference and trained:  # typed, so meant: refused rather than ignored
            flags = ", ".join("--" + k.replace("_", "-") for k in trained)
            raise ConfigError(f"{flags}: reference prior {cfg.arch} is fitted, not trained; leave {flags} out")
    console = Console(stderr=True)
    run_dir = Path(out or cfg.out or Path("runs") / cfg.run_name())
    say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731 (paths as typed)
    # The header once every check has passed (config, data, folder), so a refused run prints only its error.
    def announce() -> None:
        if cfg.is_reference:
            return say(f"fitting reference prior {cfg.arch} on {cfg.data} -> {run_dir}")
        resolved = make_config(yaml_path=run_dir / "config.yaml")  # as written: after the data-size recipe
        residual = " over a Gaussian (residual)" if resolved.residual == "gaussian" else ""
        say(f"training {resolved.arch}/{resolved.scale}{residual} with {resolved.flow} on {cfg.data} -> {run_dir}")
    try:
        summary = run_training(cfg, run_dir, resume=resume, progress=not quiet, on_start=announce)
    except ModelOptionError as err:  # name where the network options came from: the command line, a file, or both
        from_file = settings_file is not None and set(cfg.model) - set(options.get("model") or {})
        where = ([f"--model-opt {' '.join(model_opt)}"] if model_opt else []) + (
            [f"{settings_file} (model:)"] if from_file else [])
        raise ConfigError(f"{' / '.join(where)}: {str(err).removeprefix('model: ')}" if where else str(err)) from None
    except ConfigError as err:
        if type(err) is not ConfigError:  # a subclass (a busy folder, ...) says what it says
            raise
        raise _flag_names(err) from None
    if "reference" in summary:
        fit = summary["reference"]
        chosen = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fit["chosen"].items())
        likelihood = fit["val_log_likelihood"]
        say(f"done: {cfg.arch} with {chosen} (chosen on the validation rows of {len(fit['candidates']) or 1} "
            f"candidate(s)){'' if likelihood is None else f', val log-likelihood {likelihood:.1f}'}; val loss "
            f"{summary['best_val_loss']:.4f} (baseline {summary['baseline_val_loss']:.4f}) in {summary['wall_seconds']:.0f}s")
    else:
        chosen = (f"best samples' worst ratio on validation rows {summary['best_val_worst_ratio']:.3f} (val loss "
                  f"{summary['best_val_loss']:.4f})" if summary.get("selected_by") == "samples"
                  else f"best val loss {summary['best_val_loss']:.4f}")
        say(f"done: {chosen} (baseline {summary['baseline_val_loss']:.4f}) "
            f"at step {summary['best_step']}, {summary['steps']} steps in {summary['wall_seconds']:.0f}s")
    if summary.get("left_the_gaussian") is False:
        say(f"warning: the network never left the Gaussian it adds to (validation worst ratio "
            f"{summary['gaussian_val_worst_ratio']:.3f} at the first validation, {summary['best_val_worst_ratio']:.3f} "
            "at the best): its samples are the Gaussian's; train longer (--steps, --min-steps), or use --residual none")
    say(f"run folder: {run_dir}")
    say(f"next: scaleflow sample {shlex.quote(str(run_dir))} --n 1000 --out samples.npy")
