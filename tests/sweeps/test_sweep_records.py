"""trial_id and ResultStore: stable ids, whole lines, torn tails ignored and repaired; a died trial retried
until its third death; no import circle between records, spec and the tasks."""
import ast
import json
from pathlib import Path

import scaleflow.sweeps.records as records
from scaleflow.sweeps import ResultStore, SweepSpec, trial_id
from scaleflow.sweeps.ledger import MAX_DEATHS, SweepLedger


def test_trial_id_is_stable_under_key_order_and_differs_by_value():
    a = trial_id({"lr": 0.1, "scale": "tiny", "model": {"depth": 2, "width": 8}, "seed": 0})
    b = trial_id({"seed": 0, "model": {"width": 8, "depth": 2}, "scale": "tiny", "lr": 0.1})
    assert a == b and len(a) == 12
    assert trial_id({"lr": 0.1, "seed": 1}) != trial_id({"lr": 0.1, "seed": 0})


def test_done_ids_counts_ok_and_failed_only(tmp_path):
    store = ResultStore(tmp_path)
    assert store.records() == [] and store.done_ids() == set()
    store.append({"id": "a", "status": "ok"})
    store.append({"id": "b", "status": "failed"})
    store.append({"id": "c", "status": "running"})
    assert store.done_ids() == {"a", "b"}
    assert [r["id"] for r in store.records()] == ["a", "b", "c"]


def test_torn_last_line_is_ignored_then_cut_on_append(tmp_path):
    store = ResultStore(tmp_path)
    store.append({"id": "a", "status": "ok"})
    with open(store.path, "a") as f:
        f.write('{"id": "b", "status": "o')  # kill -9 mid-write
    assert store.done_ids() == {"a"}
    store.append({"id": "b", "status": "ok"})
    lines = store.path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b"]


def test_done_ids_leave_a_died_trial_to_be_retried(tmp_path):
    store = ResultStore(tmp_path)
    store.append({"id": "a", "status": "died", "attempt": 1})
    assert store.done_ids() == set()
    store.append({"id": "a", "status": "ok"})
    assert store.done_ids() == {"a"}


def test_a_trial_is_retried_after_each_death_and_failed_at_the_third(tmp_path):
    spec = SweepSpec(name="d", axes={"lr": [1, 2]})
    (a, options), (b, _) = SweepLedger(spec, tmp_path).trials
    seen = []
    for attempt in range(1, MAX_DEATHS + 1):
        with SweepLedger(spec, tmp_path, progress=lambda r, n, total: seen.append((r["status"], n))) as ledger:
            assert [tid for tid, _ in ledger.pending] == [a, b]  # the dead trial is still to run
            record = ledger.died(a, options, "WorkerDied: killed by SIGKILL", seconds=1.5)
            assert record["attempt"] == attempt and ledger.records() == [record]
    assert seen == [("died", 0), ("died", 0), ("failed", 1)]  # only the last counts as done
    assert record["status"] == "failed" and record["error"] == (
        "WorkerDied: killed by SIGKILL; died 3 times, not retried again")
    with SweepLedger(spec, tmp_path) as ledger:
        assert [tid for tid, _ in ledger.pending] == [b] and ledger.n_done == 1
    first = ResultStore(tmp_path).records()[0]
    assert first == {"id": a, "config": options, "status": "died", "attempt": 1, "seconds": 1.5,
                     "error": "WorkerDied: killed by SIGKILL; attempt 1 of 3: a rerun retries it"}


def _imports_inside_functions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("scaleflow.sweeps"):
                    found.append(f"{path.name}: {inner.module}")
    return found


def test_records_spec_and_tasks_import_each_other_at_the_top_only():
    """No import circle to dodge: records imports nothing of sweeps; spec, tasks and vit_task import it at the top."""
    folder = Path(records.__file__).parent
    lazy = [m for name in ("records", "spec", "tasks", "vit_task") for m in _imports_inside_functions(folder / f"{name}.py")]
    assert lazy == []
    tree = ast.parse((folder / "records.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.startswith("scaleflow.sweeps")]
