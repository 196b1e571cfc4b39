"""The Ray runner on a local Ray with 2 CPUs records what the local runner records."""
import os
import sys
from pathlib import Path

import pytest

from scaleflow.sweeps import SweepSpec, run_sweep
from scaleflow.sweeps.ray_runner import require_ray, run_sweep_ray
from scaleflow.training.config import ConfigError

SPEC = SweepSpec(name="r", axes={"lr": [1, 2], "batch_size": [8, 16]}, seeds=[0, 1])


def pure_trial(options):
    """Module-level, so Ray can ship it to its workers; a pure function of the options."""
    if options["lr"] == 2 and options["batch_size"] == 8 and options["seed"] == 1:
        raise RuntimeError("diverged:\nloss is nan")
    return {"loss": options["lr"] * options["batch_size"] + options["seed"]}


def _comparable(records):
    return [(r["id"], r["config"], r["status"], r.get("result"), r.get("error")) for r in records]


def test_ray_gives_the_local_records(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    # Ray's workers import this module to run pure_trial; the local Ray they belong to inherits this env.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    local = run_sweep(SPEC, tmp_path / "local", pure_trial)
    seen = []
    remote = run_sweep_ray(SPEC, tmp_path / "ray", pure_trial, num_cpus=2,
                           progress=lambda record, n, total: seen.append(n))
    assert _comparable(remote) == _comparable(local)
    assert sorted(seen) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [r["error"] for r in remote if r["status"] == "failed"] == ["RuntimeError: diverged: loss is nan"]
    assert all(r["peak_rss_mb"] > 10 for r in remote if r["status"] == "ok")
    assert run_sweep_ray(SPEC, tmp_path / "ray", pure_trial, num_cpus=2) == remote  # all done: nothing reruns


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'scaleflow\[ray\]'"):
        require_ray()
