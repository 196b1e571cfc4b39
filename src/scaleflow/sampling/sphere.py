"""Rows on a sphere: many sentence encoders normalize their embeddings (all-MiniLM-L6-v2's rows, the built-in
data, all have norm 1). A flow's samples are then near the sphere, not on it; `--project-sphere` puts them on
it (each sample scaled to the rows' norm, its direction kept). Whether that helps is measured, not assumed
(README, "Training, sampling, evaluating")."""
from __future__ import annotations

from typing import Optional

import torch

SPHERE_TOLERANCE = 1e-3  # relative spread of the row norms that still counts as one sphere (float32 rounding)


def sphere_radius(rows: torch.Tensor, tolerance: float = SPHERE_TOLERANCE) -> Optional[float]:
    """The common norm of original-space `rows: [N, D]` when every row has it (within `tolerance`, relative),
    else None."""
    norms = rows.double().norm(dim=1)
    if len(norms) == 0:
        return None
    middle = float(norms.median())
    if middle <= 0 or float((norms - middle).abs().max()) > tolerance * middle:
        return None
    return middle


def project_to_sphere(x: torch.Tensor, radius: float) -> torch.Tensor:
    """`x: [N, D]` (original space) scaled row by row to norm `radius`, directions kept (a zero row stays zero)."""
    norms = x.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, x * (radius / norms.clamp_min(1e-30)), x)
