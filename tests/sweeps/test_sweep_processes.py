"""run_sweep(jobs=N): trials in worker processes give the records the in-process runner gives; a worker
that dies is a failed trial, not a dead sweep; workers get their share of the cores and die with the sweep."""
import os
import signal
import subprocess
import sys
import time

import pytest

from scaleflow.sweeps import SweepSpec, expand, run_sweep, trial_id
from scaleflow.sweeps.local import threads_per_job

SPEC = SweepSpec(name="p", axes={"lr": [1, 2, 3], "batch_size": [8, 16]}, seeds=[0, 1])


def pure_trial(options):
    """A module-level (picklable) trial: a pure function of its options."""
    if options["lr"] == 2 and options["batch_size"] == 16 and options["seed"] == 1:
        raise RuntimeError("diverged:\nloss is nan")
    if options["lr"] == 3 and options["batch_size"] == 8 and options["seed"] == 0:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
    return {"loss": options["lr"] * options["batch_size"] + options["seed"]}


def thread_count_trial(options):
    import torch

    return {"threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}


def test_workers_give_the_inline_records_and_survive_a_dead_worker(tmp_path):
    inline = run_sweep(SPEC, tmp_path / "inline", pure_trial_without_kill)
    seen = []
    parallel = run_sweep(SPEC, tmp_path / "parallel", pure_trial, jobs=2,
                         progress=lambda record, n, total: seen.append((n, total)))
    assert [r["id"] for r in parallel] == [trial_id(t) for t in expand(SPEC)]
    assert sorted(n for n, _ in seen) == list(range(1, 13)) and {t for _, t in seen} == {12}
    killed = trial_id({"lr": 3, "batch_size": 8, "seed": 0})
    for a, b in zip(inline, parallel):
        assert a["config"] == b["config"]
        if b["id"] == killed:
            assert b["status"] == "failed" and "SIGKILL" in b["error"] and "out of memory" in b["error"]
            continue
        assert (a["status"], a.get("result"), a.get("error")) == (b["status"], b.get("result"), b.get("error"))
        assert b["peak_rss_mb"] > 10  # a fresh process's own peak (a Python with torch loaded)
    assert [r["status"] for r in parallel].count("failed") == 2
    again = run_sweep(SPEC, tmp_path / "parallel", pure_trial, jobs=2)
    assert again == parallel  # everything recorded: nothing runs twice


def pure_trial_without_kill(options):
    if options["lr"] == 3 and options["batch_size"] == 8 and options["seed"] == 0:
        return {"loss": 24}
    return pure_trial(options)


@pytest.mark.parametrize("jobs,cores,expected", [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 16, 8), (3, 16, 5)])
def test_cores_are_split_over_the_jobs(jobs, cores, expected):
    assert threads_per_job(jobs, cores) == expected


def test_each_worker_runs_with_its_thread_share(tmp_path):
    spec = SweepSpec(name="t", axes={"lr": [1, 2]})
    before = os.environ.get("OMP_NUM_THREADS")
    records = run_sweep(spec, tmp_path, thread_count_trial, jobs=2, threads=1)
    assert [r["result"] for r in records] == [{"threads": 1, "omp": "1"}] * 2
    assert os.environ.get("OMP_NUM_THREADS") == before  # the sweep's own environment is left as it was


_SWEEP_THEN_KILLED = """
import os, sys, time
from scaleflow.sweeps import SweepSpec, run_sweep
def trial(options):
    open(os.path.join(sys.argv[1], "worker.pid"), "w").write(str(os.getpid()))
    time.sleep(120)
    return {}
if __name__ == "__main__":
    run_sweep(SweepSpec(name="k", axes={"lr": [1]}), sys.argv[1], trial, jobs=1)
"""


def test_workers_die_with_a_hard_killed_sweep(tmp_path):
    script = tmp_path / "sweep_script.py"
    script.write_text(_SWEEP_THEN_KILLED)
    sweep = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    pid_file = tmp_path / "worker.pid"
    deadline = time.time() + 60
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)
    worker = int(pid_file.read_text())
    sweep.kill()  # kill -9: no finally runs in the sweep
    sweep.wait()
    for _ in range(100):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its sweep")
