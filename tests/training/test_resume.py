"""A run stopped at any moment (a crash, kill -9, SIGTERM, Ctrl-C, a full disk) resumes to the weights of
an uninterrupted run, bit for bit; one process at a time trains a folder."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scaleflow.training.config import make_config
from scaleflow.training.lock import RunFolderBusy
from scaleflow.training.run import train
from scaleflow.training.signals import TrainingInterrupted
from scaleflow.training.trainer import RunWriteError

from crash_helpers import Crash, crash_at
from lock_holder import someone_else_can_lock

STEPS, CHECKPOINT_EVERY = 40, 20
# The options of every run here: the uninterrupted reference and each interrupted one.
OPTIONS = dict(arch="mlp", scale="tiny", model={"hidden_dim": 32}, steps=STEPS, batch_size=32, val_every=10,
               checkpoint_every=CHECKPOINT_EVERY, log_every=5, n_val=40, n_test=40, warmup_steps=5, lr=1e-2,
               device="cpu")



@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> Path:
    """The uninterrupted run every interrupted one must end equal to."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train(make_config({**OPTIONS, "data": data}), out, progress=False)
    return out


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(run: Path, reference: Path) -> None:
    """Best weights (raw and EMA), the final checkpoint's weights and every logged number are equal."""
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(run / name)), load_file(str(reference / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    a, b = (torch.load(r / "checkpoints/last.pt", weights_only=True) for r in (run, reference))
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert a["state"]["step"] == STEPS and a["state"]["best_step"] == b["state"]["best_step"]
    drop = lambda records: [{k: v for k, v in r.items() if k != "steps_per_s"} for r in records]  # noqa: E731
    assert drop(_records(run)) == drop(_records(reference))  # each step once, the same numbers


# --------------------------------------------------------------------------- crashes (B)


@pytest.mark.parametrize("crash_step, checkpointed", [(3, None), (20, 20), (33, 20)])
def test_a_crash_at_any_step_resumes_to_the_uninterrupted_weights(crash_step, checkpointed, data, reference, tmp_path):
    config, out = make_config({**OPTIONS, "data": data}), tmp_path / "run"
    with pytest.raises(Crash):
        train(config, out, progress=False, on_step=crash_at(crash_step))
    last = out / "checkpoints" / "last.pt"
    assert (torch.load(last, weights_only=True)["state"]["step"] if last.exists() else None) == checkpointed
    logged = _records(out) if (out / "metrics.jsonl").exists() else []
    assert [r["step"] for r in logged][-1:] == ([crash_step - crash_step % 5] if crash_step >= 5 else [])
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 35, "loss": 0.12')  # and a record cut short by the kill
    summary = train(config, out, resume=True, progress=False)
    assert summary["steps"] == STEPS
    assert_same_run(out, reference)


def test_a_run_killed_while_writing_its_header_starts_again_from_step_0(data, reference, tmp_path):
    config, out = make_config({**OPTIONS, "data": data}), tmp_path / "run"
    with pytest.raises(Crash):
        train(config, out, progress=False, on_step=crash_at(2))
    for name in ("splits.json", "normalization.safetensors", "model.json"):
        (out / name).unlink()  # as if killed right after config.yaml was written
    with pytest.raises(ValueError, match="already holds a run; use --resume"):
        train(config, out, progress=False)
    train(config, out, resume=True, progress=False)
    assert_same_run(out, reference)
    assert json.loads((out / "splits.json").read_text()) == json.loads((reference / "splits.json").read_text())


def test_resume_needs_the_folders_config(data, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: nothing to resume \(no config.yaml\)"):
        train(make_config({**OPTIONS, "data": data}), tmp_path / "empty", resume=True, progress=False)
    assert list((tmp_path / "empty").iterdir()) == []


# --------------------------------------------------------------------------- signals (C)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_checkpoints_the_current_step_and_resumes_exactly(signum, data, reference, tmp_path):
    config, out = make_config({**OPTIONS, "data": data}), tmp_path / "run"
    before = signal.getsignal(signum)

    def send(step: int) -> None:
        if step == 13:
            os.kill(os.getpid(), signum)

    with pytest.raises(TrainingInterrupted) as info:
        train(config, out, progress=False, on_step=send)
    name, last = signal.Signals(signum).name, out / "checkpoints" / "last.pt"
    assert str(info.value) == (f"{name} received: stopped at step 13 of {STEPS} with a checkpoint in {last}; "
                               f"continue with: scaleflow train --resume --out {out}")
    assert info.value.signum == signum and signal.getsignal(signum) is before  # handlers restored
    assert torch.load(last, weights_only=True)["state"]["step"] == 13  # no step lost
    train(config, out, resume=True, progress=False)
    assert_same_run(out, reference)


def _start_cli(out: Path, data: str, seconds_per_step: float) -> subprocess.Popen:
    """`scaleflow train` in its own process, each step slowed down so a test can act while it trains."""
    code = ("import sys, time\n"
            "from scaleflow.training.trainer import Trainer\n"
            "step = Trainer.train_step\n"
            f"Trainer.train_step = lambda self, s: (time.sleep({seconds_per_step}), step(self, s))[1]\n"
            "from scaleflow.cli.main import main\n"
            "main()\n")
    options = ["--data", data, "--arch", "mlp", "--scale", "tiny", "--model-opt", "hidden_dim=32", "--steps", STEPS,
               "--batch-size", 32, "--val-every", 10, "--checkpoint-every", CHECKPOINT_EVERY, "--log-every", 5, "--n-val", 40,
               "--n-test", 40, "--warmup-steps", 5, "--lr", 0.01, "--device", "cpu", "--quiet", "--out", out]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("SCALEFLOW_DEBUG", None)
    return subprocess.Popen([sys.executable, "-c", code, "train", *map(str, options)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until_training(process: subprocess.Popen, out: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (out / "metrics.jsonl").exists():  # the first record: training is under way
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.02)


def test_sigterm_to_the_command_checkpoints_and_resumes_bit_for_bit(data, reference, tmp_path):
    out = tmp_path / "run"
    process = _start_cli(out, data, seconds_per_step=0.05)
    _wait_until_training(process, out)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    step = torch.load(out / "checkpoints/last.pt", weights_only=True)["state"]["step"]
    assert 0 < step < STEPS and line == (
        f"error: SIGTERM received: stopped at step {step} of {STEPS} with a checkpoint in {out}/checkpoints/last.pt; "
        f"continue with: scaleflow train --resume --out {out}")
    train(make_config(yaml_path=out / "config.yaml"), out, resume=True, progress=False)
    assert_same_run(out, reference)


# --------------------------------------------------------------------------- one process per folder (D)


def test_a_second_training_is_refused_and_kill_9_leaves_no_stale_lock(data, reference, tmp_path):
    out = tmp_path / "run"
    process = _start_cli(out, data, seconds_per_step=0.05)
    try:
        _wait_until_training(process, out)
        config = make_config({**OPTIONS, "data": data})
        for resume in (False, True):
            with pytest.raises(RunFolderBusy) as info:
                train(config, out, resume=resume, progress=False)
            message = str(info.value)
            assert message.startswith(f"{out}: another training is writing this run folder (pid {process.pid} on ")
            assert message.endswith("wait for it to finish or stop it, or choose another --out") and "\n" not in message
        assert process.poll() is None  # the first one trains on
    finally:
        process.kill()  # SIGKILL: no handler runs, the lock goes with the process
        process.communicate(timeout=60)
    assert (out / ".lock").exists()
    train(make_config(yaml_path=out / "config.yaml"), out, resume=True, progress=False)
    assert_same_run(out, reference)


def test_the_lock_is_reentrant_for_its_holder_and_released_after(tmp_path):
    from scaleflow.training.lock import check_not_busy, run_lock

    out = tmp_path / "run"
    with run_lock(out):
        check_not_busy(out)  # the holder itself is not refused, and may take the lock again (reflow, then train)
        with run_lock(out):
            assert not someone_else_can_lock(out)
        assert not someone_else_can_lock(out)
        assert (out / ".lock").read_text().startswith(f"pid {os.getpid()} on ")
    assert someone_else_can_lock(out)


# --------------------------------------------------------------------------- a full disk (E)


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(data, reference, tmp_path, monkeypatch):
    config, out = make_config({**OPTIONS, "data": data}), tmp_path / "run"
    real_save, calls = torch.save, []

    def disk_fills_up(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:  # the checkpoint of step 40: half written, then the disk is full
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_up)
    with pytest.raises(RunWriteError) as info:
        train(config, out, progress=False)
    last = out / "checkpoints" / "last.pt"
    assert str(info.value) == (f"{last}: could not be written (No space left on device); the checkpoint in {last} "
                               f"(step 20) is intact; free space or fix the disk, then continue with: "
                               f"scaleflow train --resume --out {out}")
    assert isinstance(info.value, OSError)  # the CLI prints it as one `error:` line
    assert torch.load(last, weights_only=True)["state"]["step"] == 20
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(torch, "save", real_save)
    train(config, out, resume=True, progress=False)
    assert_same_run(out, reference)
