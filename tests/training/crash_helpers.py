"""Crashing a training run on purpose and checking that its resume ends where an uninterrupted run does."""
import pytest
import torch


class Crash(Exception):
    """A crash simulated inside the training loop (what kill -9 would leave, minus the process)."""


def crash_at(step: int):
    """An `on_step` hook that crashes the run right after step `step`."""
    def on_step(s: int) -> None:
        if s == step:
            raise Crash
    return on_step


def crash_resume_and_compare(config, folder, crash_step: int) -> None:
    """Train `config` whole into `folder/whole`; crash another copy after `crash_step`, resume it, and
    check both end with the same best weights (model and EMA), bit for bit."""
    from safetensors.torch import load_file

    from scaleflow.training.run import train

    train(config, folder / "whole", progress=False)
    with pytest.raises(Crash):
        train(config, folder / "resumed", progress=False, on_step=crash_at(crash_step))
    train(config, folder / "resumed", resume=True, progress=False)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(folder / "whole" / name)), load_file(str(folder / "resumed" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
