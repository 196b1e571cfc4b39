"""What a trial records about where it ran: the versions its result depends on, and its peak memory."""
from __future__ import annotations

import platform
import resource

import numpy as np
import torch

import scaleflow


def versions() -> dict[str, str]:
    """The versions a result depends on."""
    return {"scaleflow": scaleflow.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process (the whole trial when it has a process of its own), and
    the peak CUDA allocation when it ran on a GPU."""
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {"peak_rss_mb": round(rss_kb / 1024, 1)}
    if device.type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out
