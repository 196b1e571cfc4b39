"""Training runs: the validated config, the trainer, and run folders written and read back."""
from scaleflow.training.config import ConfigError, TrainConfig, make_config
from scaleflow.training.reflow import reflow
from scaleflow.training.lock import RunFolderBusy
from scaleflow.training.run import Run, load_run, train
from scaleflow.training.signals import TrainingInterrupted
from scaleflow.training.trainer import RunWriteError, Trainer, TrainingDiverged

__all__ = ["ConfigError", "Run", "RunFolderBusy", "RunWriteError", "TrainConfig", "Trainer", "TrainingDiverged",
           "TrainingInterrupted", "load_run", "make_config", "reflow", "train"]
