"""run_sweep(jobs=N): trials in worker processes give the records the in-process runner gives; a worker
that dies is a retried trial (failed at its third death), not a dead sweep; a worker killed with kill -9
mid-trial reruns to ok; workers get their share of the cores and die with the sweep."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scaleflow.sweeps import ResultStore, SweepSpec, expand, run_sweep, trial_id
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
    folder = tmp_path / "parallel"
    parallel = run_sweep(SPEC, folder, pure_trial, jobs=2, progress=lambda record, n, total: seen.append((n, record)))
    assert [r["id"] for r in parallel] == [trial_id(t) for t in expand(SPEC)]
    killed = trial_id({"lr": 3, "batch_size": 8, "seed": 0})
    # The death is shown but not counted done: 11 of 12 trials are.
    assert sorted(n for n, r in seen if r["status"] != "died") == list(range(1, 12))
    assert [r["id"] for _, r in seen if r["status"] == "died"] == [killed]
    for a, b in zip(inline, parallel):
        assert a["config"] == b["config"]
        if b["id"] == killed:
            assert b["status"] == "died" and b["attempt"] == 1
            assert "SIGKILL" in b["error"] and "out of memory" in b["error"] and "a rerun retries it" in b["error"]
            continue
        assert (a["status"], a.get("result"), a.get("error")) == (b["status"], b.get("result"), b.get("error"))
        assert b["peak_rss_mb"] > 10  # a fresh process's own peak (a Python with torch loaded)
    assert [r["status"] for r in parallel].count("failed") == 1
    assert killed not in ResultStore(folder).done_ids()  # a death is not a result: a rerun retries it
    # It dies every time (it needs more memory than there is): retried twice more, then failed for good.
    second = run_sweep(SPEC, folder, pure_trial, jobs=2)
    assert [(r["status"], r.get("attempt")) for r in second if r["id"] == killed] == [("died", 2)]
    third = run_sweep(SPEC, folder, pure_trial, jobs=2)
    dead = [r for r in third if r["id"] == killed][0]
    assert (dead["status"], dead["attempt"]) == ("failed", 3) and "died 3 times" in dead["error"]
    assert [r for r in third if r["id"] != killed] == [r for r in parallel if r["id"] != killed]
    lines = (folder / "results.jsonl").read_text().splitlines()
    again = run_sweep(SPEC, folder, pure_trial, jobs=2)
    assert again == third and (folder / "results.jsonl").read_text().splitlines() == lines  # not a 4th time


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


def blocking_trial(options):
    """Writes its pid to `$SWEEP_TEST_DIR/pid.<lr>`, then waits for the file `go`: a trial to kill mid-run."""
    folder = Path(os.environ["SWEEP_TEST_DIR"])
    (folder / f"pid.{options['lr']}").write_text(str(os.getpid()))
    while not (folder / "go").exists():
        time.sleep(0.02)
    return {"lr": options["lr"]}


def _wait_for(path: Path, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_worker_killed_mid_trial_is_retried_by_the_rerun(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_TEST_DIR", str(tmp_path))  # the spawned workers inherit it
    spec, folder = SweepSpec(name="kill", axes={"lr": [1, 2]}), tmp_path / "sweep"

    def kill_the_second_worker():
        _wait_for(tmp_path / "pid.1")
        _wait_for(tmp_path / "pid.2")
        time.sleep(0.1)  # its pid is on disk: it is inside the trial
        os.kill(int((tmp_path / "pid.2").read_text()), signal.SIGKILL)  # kill -9, as an OOM killer would
        (tmp_path / "go").touch()  # the other trial finishes normally

    killer = threading.Thread(target=kill_the_second_worker)
    killer.start()
    try:
        first = run_sweep(spec, folder, blocking_trial, jobs=2)
    finally:
        (tmp_path / "go").touch()
        killer.join()
    assert [(r["config"]["lr"], r["status"], r.get("attempt")) for r in first] == [(1, "ok", None), (2, "died", 1)]
    assert "SIGKILL" in first[1]["error"]
    rerun = run_sweep(spec, folder, blocking_trial, jobs=2)
    assert [(r["status"], r["result"]) for r in rerun] == [("ok", {"lr": 1}), ("ok", {"lr": 2})]  # no trial lost
    assert rerun[0] == first[0]  # the finished one was not run again
    lines = [(r["config"]["lr"], r["status"]) for r in ResultStore(folder).records()]
    assert sorted(lines) == [(1, "ok"), (2, "died"), (2, "ok")]


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
