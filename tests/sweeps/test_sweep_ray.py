"""The Ray runner on a local Ray with 2 CPUs records what the local runner records; a lost worker is a
death (retried by a rerun), the trial's own exception a failure, a cancelled task nothing."""
import os
import signal
import sys
from pathlib import Path

import pytest

from scaleflow.sweeps import SweepSpec, run_sweep
from scaleflow.sweeps.ledger import SweepLedger
from scaleflow.sweeps.ray_runner import _record, require_ray, run_sweep_ray
from scaleflow.training.config import ConfigError

SPEC = SweepSpec(name="r", axes={"lr": [1, 2], "batch_size": [8, 16]}, seeds=[0, 1])


def pure_trial(options):
    """Module-level, so Ray can ship it to its workers; a pure function of the options."""
    if options["lr"] == 2 and options["batch_size"] == 8 and options["seed"] == 1:
        raise RuntimeError("diverged:\nloss is nan")
    return {"loss": options["lr"] * options["batch_size"] + options["seed"]}


def dies_once_trial(options):
    """pure_trial, but the first attempt of one trial is killed (kill -9, as the OOM killer would)."""
    marker = Path(os.environ["RAY_TEST_DIR"]) / "killed_once"
    if options["lr"] == 1 and options["batch_size"] == 16 and options["seed"] == 0 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return pure_trial(options)


def _comparable(records):
    return [(r["id"], r["config"], r["status"], r.get("result"), r.get("error")) for r in records]


def test_ray_gives_the_local_records(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    # Ray's workers import this module to run pure_trial; the local Ray they belong to inherits this env.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("RAY_TEST_DIR", str(tmp_path))
    local = run_sweep(SPEC, tmp_path / "local", pure_trial)
    seen = []
    remote = run_sweep_ray(SPEC, tmp_path / "ray", dies_once_trial, num_cpus=2,
                           progress=lambda record, n, total: seen.append(n))
    assert (tmp_path / "killed_once").exists()  # a worker was killed mid-trial: Ray ran the trial again
    assert _comparable(remote) == _comparable(local)
    assert sorted(seen) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [r["error"] for r in remote if r["status"] == "failed"] == ["RuntimeError: diverged: loss is nan"]
    assert all(r["peak_rss_mb"] > 10 for r in remote if r["status"] == "ok")
    assert run_sweep_ray(SPEC, tmp_path / "ray", pure_trial, num_cpus=2) == remote  # all done: nothing reruns


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'scaleflow\[ray\]'"):
        require_ray()


def test_each_way_a_task_ends_is_recorded_as_what_it_is(tmp_path):
    ray = pytest.importorskip("ray")

    class Finished:
        """Stands for Ray: `get(ref)` returns the ref's value, or raises it when it is an error."""

        exceptions = ray.exceptions

        def get(self, ref):
            if isinstance(ref, BaseException):
                raise ref
            return ref

    spec = SweepSpec(name="e", axes={"lr": [1, 2, 3, 4, 5]})
    crashed = ray.exceptions.WorkerCrashedError()
    ends = [({"loss": 1.0}, 300.0), ray.exceptions.RayTaskError("trial", "tb", RuntimeError("diverged:\nnan")),
            crashed, ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory."),
            ray.exceptions.TaskCancelledError()]
    with SweepLedger(spec, tmp_path) as ledger:
        for ref, (tid, options) in zip(ends, ledger.trials):
            _record(Finished(), ledger, ref, tid, options, 0.0)
        records = ledger.records()
    assert [(r["config"]["lr"], r["status"], r.get("attempt")) for r in records] == [
        (1, "ok", None), (2, "failed", None), (3, "died", 1), (4, "died", 1)]  # the cancelled one: nothing
    assert records[0]["result"] == {"loss": 1.0} and records[0]["peak_rss_mb"] == 300.0
    assert records[1]["error"] == "RuntimeError: diverged: nan"  # the trial's own error, as the local runner
    assert records[2]["error"].startswith("WorkerCrashedError: The worker died unexpectedly")
    assert records[2]["error"].endswith("attempt 1 of 3: a rerun retries it")
