"""trial_id and ResultStore: stable ids, whole lines, torn tails ignored and repaired."""
import json

from scaleflow.sweeps import ResultStore, trial_id


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
