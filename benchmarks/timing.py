"""What the benchmark scripts share: the median wall time of repeated calls."""
from __future__ import annotations

import statistics
import time


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls of `fn()`, and the last call's result."""
    times, out = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), out
