"""What a trial records about where it ran: the versions its result depends on, and its peak memory; and the
cores this process may use. Linux is what we test on; where `resource` (Windows) or `os.sched_getaffinity`
(macOS, Windows) is missing, these fall back instead of failing the import."""
from __future__ import annotations

import os
import platform
import sys
from typing import Optional

import numpy as np
import torch

import scaleflow


def versions() -> dict[str, str]:
    """The versions a result depends on."""
    return {"scaleflow": scaleflow.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS has one (Linux), else every core."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return len(affinity(0))
    return os.cpu_count() or 1


def peak_rss_mb() -> Optional[float]:
    """Peak resident memory of this process in MiB, or None where the OS does not say (no `resource`: Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)  # bytes on macOS, KiB on Linux


def peak_memory_mb(device: torch.device) -> dict[str, Optional[float]]:
    """Peak resident memory of this process (the whole trial when it has a process of its own), and
    the peak CUDA allocation when it ran on a GPU."""
    out: dict[str, Optional[float]] = {"peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out
