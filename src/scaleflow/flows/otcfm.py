"""Minibatch optimal-transport conditional flow matching (OT-CFM, Tong et al. 2023)."""
from __future__ import annotations

import warnings

import numpy as np
import ot
import torch

from scaleflow.flows.icfm import ICFM
from scaleflow.flows.time_sampling import TimeSampler

OT_METHODS: tuple[str, ...] = ("exact", "sinkhorn")


class OTCFM(ICFM):
    """ICFM's straight path, with noise and data re-paired by a minibatch OT plan (squared L2 cost).

    Straighter pairings give lower-variance regression targets and straighter learned flows.

    Args:
        sigma: constant std of the noise around the path.
        method: "exact" (`ot.emd`) or "sinkhorn" (`ot.sinkhorn`, entropic).
        reg: entropic regularization, relative to the max-normalized cost (sinkhorn only).
        replace: when sampling pairs from a non-permutation plan, allow one plan cell twice.
        normalize_cost: divide the cost by its max, so `reg` does not depend on the data's scale.
        num_iter_max: iteration cap for `ot.emd` (its default is too small for B in the hundreds).
        time_sampler: distribution of t when none is passed (default uniform).
    """

    name = "otcfm"

    def __init__(
        self,
        sigma: float = 0.0,
        method: str = "exact",
        reg: float = 0.05,
        replace: bool = False,
        normalize_cost: bool = True,
        num_iter_max: int = 1_000_000,
        time_sampler: TimeSampler | None = None,
    ) -> None:
        super().__init__(sigma=sigma, time_sampler=time_sampler)
        if method not in OT_METHODS:
            raise ValueError(f"unknown OT method {method!r}; known: {', '.join(OT_METHODS)}")
        if method == "sinkhorn" and reg <= 0:
            raise ValueError(f"sinkhorn needs reg > 0, got {reg}")
        self.method = method
        self.reg = float(reg)
        self.replace = bool(replace)
        self.normalize_cost = normalize_cost
        self.num_iter_max = int(num_iter_max)

    def cost_matrix(self, x0: torch.Tensor, x1: torch.Tensor) -> np.ndarray:
        """Squared Euclidean cost `[B0, B1]` as float64 numpy (max-normalized if configured)."""
        # Compute on the data's device (fast on GPU), in at least float32; POT wants CPU float64.
        dtype = torch.promote_types(x0.dtype, torch.float32)
        a, b = x0.detach().flatten(1).to(dtype), x1.detach().flatten(1).to(dtype)
        cost = torch.cdist(a, b).pow(2)  # default matmul form: fast for large batches
        cost = cost.cpu().double().numpy()
        if self.normalize_cost:
            cost = cost / max(float(cost.max()), 1e-12)  # guard the all-equal batch
        return cost

    def transport_plan(self, x0: torch.Tensor, x1: torch.Tensor) -> np.ndarray:
        """OT plan `[B0, B1]` between uniform weights on the rows of x0 `[B0, D]` and x1 `[B1, D]`."""
        a, b = ot.unif(x0.shape[0]), ot.unif(x1.shape[0])
        cost = self.cost_matrix(x0, x1)
        if self.method == "exact":
            return ot.emd(a, b, cost, numItermax=self.num_iter_max)
        with warnings.catch_warnings():
            # Not reaching stopThr=1e-9 in 1000 iterations is common and harmless for pair sampling.
            warnings.simplefilter("ignore")
            plan = ot.sinkhorn(a, b, cost, self.reg)
            if not np.all(np.isfinite(plan)) or abs(plan.sum() - 1.0) > 1e-3:
                # Plain sinkhorn underflows (exp(-cost/reg) -> 0) for very small reg and returns a
                # near-empty plan; the slower log-domain version does not.
                plan = ot.sinkhorn(a, b, cost, self.reg, method="sinkhorn_log")
        return plan

    def pair_indices(
        self, x0: torch.Tensor, x1: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices `(i, j)`, each `[B1]` long on x0's device, pairing x0[i[k]] with x1[j[k]].

        Exact OT with equal batch sizes yields a permutation matrix (a vertex of the Birkhoff
        polytope), so each data row takes its argmax noise row: deterministic, every row used once,
        and x1 keeps its order (j = arange). Otherwise pairs are drawn from the plan.
        """
        plan = self.transport_plan(x0, x1)
        n0, n1 = plan.shape
        device = x0.device
        if self.method == "exact" and n0 == n1:
            i = torch.from_numpy(plan.argmax(axis=0)).long()
            if torch.unique(i).numel() == n0:
                return i.to(device), torch.arange(n1, device=device)
            warnings.warn("exact OT plan is not a permutation; sampling pairs from it instead")
        if not np.all(np.isfinite(plan)) or plan.sum() <= 0:
            warnings.warn("OT plan is degenerate (non-finite or empty); keeping the independent pairing")
            k = min(n0, n1)
            return torch.arange(k, device=device), torch.arange(k, device=device)
        p = torch.from_numpy(plan).flatten().clamp_min(0).float()
        # Draw on the generator's device so a seeded CPU generator is reproducible across devices.
        p = p.to(generator.device if generator is not None else "cpu")
        n_pairs = n1 if self.replace else min(n1, int((p > 0).sum()))
        flat = torch.multinomial(p, n_pairs, replacement=self.replace, generator=generator)
        return (flat // n1).to(device), (flat % n1).to(device)

    def couple(
        self, x0: torch.Tensor, x1: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-pair the batch by the OT plan. x0: `[B0, D]`, x1: `[B1, D]` -> two `[B1, D]` tensors."""
        i, j = self.pair_indices(x0, x1, generator=generator)
        return x0[i], x1[j]
