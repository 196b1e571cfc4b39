"""Reading eval.json reports: derived FD rows and where value / floor is shown."""
from __future__ import annotations

import pytest

from scaleflow.evaluation.report import metric_entries, metric_names, ratio_to_floor

FD = {"value": 142.7, "ci": [139.5, 145.6], "floor": 44.0, "floor_ci": [41.0, 47.0], "excess": 98.7,
      "excess_ci": [94.8, 102.3], "fd_inf": 88.3, "floor_inf": 0.9}


def test_fd_is_followed_by_its_excess_and_extrapolation():
    report = {"val_loss": {"value": 1.0, "ci": [0.9, 1.1], "floor": None}, "fd": FD,
              "mmd": {"value": 0.007, "ci": [0.006, 0.008], "floor": 0.0003, "floor_ci": [-0.0003, 0.001]},
              "nfe_curve": [], "settings": {"n_generated": 1000}}
    rows = metric_entries(report)
    assert list(rows) == ["val_loss", "fd", "fd_excess", "fd_inf", "mmd"]
    assert rows["fd_excess"] == {"value": 98.7, "ci": [94.8, 102.3], "floor": None, "floor_ci": None}
    assert rows["fd_inf"] == {"value": 88.3, "ci": None, "floor": 0.9, "floor_ci": None}  # no interval recorded
    with_intervals = {"fd": {**FD, "fd_inf_ci": [80.1, 96.5], "floor_inf_ci": [-3.2, 5.0]}}
    assert metric_entries(with_intervals)["fd_inf"] == {"value": 88.3, "ci": [80.1, 96.5], "floor": 0.9,
                                                        "floor_ci": [-3.2, 5.0]}
    # An older report (no excess, no FD_inf) lines up with a newer one.
    old = {"fd": {"value": 1.0, "ci": [0.9, 1.1], "floor": 0.5}, "mmd": {"value": 0.1, "ci": [0, 0.2], "floor": 0.0}}
    assert metric_names([old, report]) == ["fd", "mmd", "val_loss", "fd_excess", "fd_inf"]


@pytest.mark.parametrize("name, value, floor, expected", [
    ("fd", 142.7, 44.0, 142.7 / 44.0),
    ("precision", 0.002, 0.959, 0.002 / 0.959),
    ("validity", 0.5, 0.95, 0.5 / 0.95),
    ("mmd", 0.007, 0.0003, None),          # unbiased MMD of real data is ~0: no ratio, ever
    ("memorization", 0.01, 0.003, None),   # a floor near 0
    ("nearest_cosine", 0.2, 0.5, None),    # cosines can be negative
    ("fd_excess", 98.7, None, None),
    ("fd", 1.0, 0.0, None),
    ("val_loss", 1.0, None, None),
])
def test_ratio_only_where_it_means_something(name, value, floor, expected):
    ratio = ratio_to_floor(name, {"value": value, "floor": floor})
    assert ratio == (None if expected is None else pytest.approx(expected))
