"""run_sweep: every trial once, failures recorded, a killed sweep resumed without repeats, one sweep per folder."""
import json
import subprocess
import sys

import pytest

from scaleflow.sweeps import ResultStore, SweepSpec, expand, run_sweep, trial_id
from scaleflow.sweeps.records import SweepFolderBusy
from scaleflow.training.config import ConfigError

from lock_holder import held_by_another_process, someone_else_can_lock

SPEC = SweepSpec(name="t", axes={"lr": [1, 2, 3], "batch_size": [8, 16]}, fixed={"steps": 5}, seeds=[0, 1])


class FakeTrial:
    """A pure function of the config that counts its calls; can crash or fail on demand."""

    def __init__(self, interrupt_after=None, fail_when=None):
        self.calls = []
        self.interrupt_after = interrupt_after
        self.fail_when = fail_when or {}

    def __call__(self, options):
        if self.interrupt_after is not None and len(self.calls) == self.interrupt_after:
            raise KeyboardInterrupt  # as if the sweep were killed before this trial finished
        self.calls.append(dict(options))
        if all(options.get(k) == v for k, v in self.fail_when.items()) and self.fail_when:
            raise RuntimeError("diverged:\nloss is nan")
        return {"loss": options["lr"] * options["batch_size"] + options["seed"]}


def test_runs_every_trial_in_order_and_records_it(tmp_path):
    trial, seen = FakeTrial(), []
    records = run_sweep(SPEC, tmp_path, trial, progress=lambda r, n, total: seen.append((n, total)))
    assert trial.calls == expand(SPEC)
    assert [r["id"] for r in records] == [trial_id(t) for t in expand(SPEC)]
    assert all(r["status"] == "ok" and r["seconds"] >= 0 for r in records)
    assert records[0]["config"] == {"steps": 5, "lr": 1, "batch_size": 8, "seed": 0}
    assert records[0]["result"] == {"loss": 8}
    assert seen == [(n, 12) for n in range(1, 13)]
    assert json.loads((tmp_path / "spec.json").read_text())["axes"] == {"lr": [1, 2, 3], "batch_size": [8, 16]}


def test_killed_sweep_resumes_with_each_trial_run_exactly_once(tmp_path):
    first = FakeTrial(interrupt_after=5)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(SPEC, tmp_path, first)
    assert len(ResultStore(tmp_path).records()) == 5
    second = FakeTrial()
    records = run_sweep(SPEC, tmp_path, second)
    all_calls = first.calls + second.calls
    assert sorted(map(trial_id, all_calls)) == sorted(map(trial_id, expand(SPEC)))  # once each
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 12 and len({json.loads(line)["id"] for line in lines}) == 12
    assert len(records) == 12
    third = FakeTrial()
    run_sweep(SPEC, tmp_path, third)
    assert third.calls == []  # nothing left to do


def test_torn_last_line_trial_reruns(tmp_path):
    run_sweep(SPEC, tmp_path, FakeTrial())
    path = tmp_path / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:20])  # killed while writing the last record
    again = FakeTrial()
    records = run_sweep(SPEC, tmp_path, again)
    assert again.calls == [expand(SPEC)[-1]]
    assert len(path.read_text().splitlines()) == 12 and len(records) == 12


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    trial = FakeTrial(fail_when={"lr": 2, "batch_size": 16, "seed": 1})
    records = run_sweep(SPEC, tmp_path, trial)
    assert len(trial.calls) == 12
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["config"] == {"steps": 5, "lr": 2, "batch_size": 16, "seed": 1}
    assert failed[0]["error"] == "RuntimeError: diverged: loss is nan"
    assert "result" not in failed[0]
    rerun = FakeTrial()
    run_sweep(SPEC, tmp_path, rerun)
    assert rerun.calls == []  # a failure is a result: not retried


def test_unserialisable_result_fails_that_trial_only(tmp_path):
    spec = SweepSpec(name="t", axes={"lr": [1, 2]})
    records = run_sweep(spec, tmp_path, lambda o: {"x": object()} if o["lr"] == 1 else {"x": 1})
    assert [r["status"] for r in records] == ["failed", "ok"]


def test_folder_of_another_sweep_is_refused(tmp_path):
    run_sweep(SPEC, tmp_path, FakeTrial())
    other = SweepSpec(name="other", axes={"lr": [1]})
    with pytest.raises(ConfigError, match="different sweep"):
        run_sweep(other, tmp_path, FakeTrial())


_KILLED_SWEEP = """
import os, sys
from scaleflow.sweeps import SweepSpec, run_sweep
spec = SweepSpec(name="t", axes={"lr": [1, 2, 3], "batch_size": [8, 16]}, fixed={"steps": 5}, seeds=[0, 1])
calls = []
def trial(options):
    if len(calls) == 4:
        os._exit(9)  # no cleanup, no finally: as close to kill -9 as a test gets
    calls.append(options)
    return {"loss": 1.0}
run_sweep(spec, sys.argv[1], trial)
"""


def test_hard_killed_process_resumes(tmp_path):
    done = subprocess.run([sys.executable, "-c", _KILLED_SWEEP, str(tmp_path)], timeout=120)
    assert done.returncode == 9
    assert len(ResultStore(tmp_path).records()) == 4
    rest = FakeTrial()
    records = run_sweep(SPEC, tmp_path, rest)
    assert rest.calls == expand(SPEC)[4:]
    assert len(records) == 12 and len((tmp_path / "results.jsonl").read_text().splitlines()) == 12


def test_an_interrupted_training_stops_the_sweep_unrecorded(tmp_path):
    from scaleflow.training.signals import TrainingInterrupted

    def stopped(options):
        raise TrainingInterrupted("stopped at step 3; checkpoint written", 15)

    with pytest.raises(TrainingInterrupted):
        run_sweep(SPEC, tmp_path, stopped)
    assert ResultStore(tmp_path).records() == []  # not a failure: it runs again next time


def test_a_second_sweep_into_a_busy_folder_is_refused_in_one_line(tmp_path):
    with held_by_another_process(tmp_path) as holder:
        trial = FakeTrial()
        with pytest.raises(SweepFolderBusy) as info:
            run_sweep(SPEC, tmp_path, trial)
    message = str(info.value)
    assert isinstance(info.value, ConfigError) and "\n" not in message
    assert message.startswith(f"{tmp_path}: another sweep is writing this folder (pid {holder.pid} on ")
    assert message.endswith("wait for it to finish or stop it, or choose another --out")
    assert trial.calls == [] and not (tmp_path / "results.jsonl").exists() and not (tmp_path / "spec.json").exists()
    assert len(run_sweep(SPEC, tmp_path, FakeTrial())) == 12  # the holder is gone (kill -9): no stale lock


def test_the_sweep_holds_its_folder_while_it_runs(tmp_path):
    held = []
    run_sweep(SweepSpec(name="h", axes={"lr": [1, 2]}), tmp_path, lambda o: held.append(someone_else_can_lock(tmp_path)) or {})
    assert held == [False, False] and someone_else_can_lock(tmp_path)  # held through every trial, released after
