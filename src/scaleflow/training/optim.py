"""Optimizers (AdamW, SGD with momentum, Muon + AdamW), with the parameter split decided in one visible place."""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "sgd", "muon")
SGD_MOMENTUM = 0.9

# Modules whose matrices Muon leaves to AdamW, by name in any of our networks: projections into the
# network from the data (`input_layer`, `input_proj`, `patch_embed`, the U-Net's first encoder layer),
# time and position embeddings, and the selective scan's parameters (A_log, D, dt_proj, x_proj, conv1d,
# which set the SSM's dynamics, not a hidden map). The output projection is found as the last Linear.
ADAMW_MODULES = ("input_layer", "input_proj", "patch_embed", "encoder.0.linear1",
                 "time_embed", "t_embedder", "pos_embed", "_ssm")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases and norm gains are not regularized towards zero."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def muon_split(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters Muon trains (hidden 2-D weight matrices of `nn.Linear` layers) and of
    those AdamW trains (everything else: input and output projections, embeddings, biases, norms,
    time and position parameters, SSM parameters even when 2-D). Every trainable parameter is in
    exactly one list."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    output = linears[-1][0] if linears else None
    hidden = {f"{name}.weight" for name, _ in linears
              if name != output and not any(part in name for part in ADAMW_MODULES)}
    muon, adamw = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (muon if name in hidden and p.dim() == 2 else adamw).append(name)
    return muon, adamw


def _adamw(groups: list[dict], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW, fused into one kernel where this torch and device support it (CPU included since 2.4)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


def make_adamw(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over all parameters, weight decay on matrices only."""
    return _adamw(parameter_groups(model, weight_decay), lr, betas)


class MuonWithAdamW(torch.optim.Optimizer):
    """torch.optim.Muon on the hidden matrices and AdamW on the rest, as one optimizer: one step, one
    state dict, and one list of param groups (the inner optimizers' own), so an LR schedule moves both."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer):
        self.inner = (muon, adamw)
        super().__init__([p for opt in self.inner for g in opt.param_groups for p in g["params"]], {})
        self.param_groups = [g for opt in self.inner for g in opt.param_groups]

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for opt in self.inner:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: D102
        for opt in self.inner:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"muon": self.inner[0].state_dict(), "adamw": self.inner[1].state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102
        self.inner[0].load_state_dict(state_dict["muon"])
        self.inner[1].load_state_dict(state_dict["adamw"])
        self.param_groups = [g for opt in self.inner for g in opt.param_groups]  # loading made new group dicts


MUON_TORCH = "2.9"  # torch.optim.Muon first shipped in torch 2.9


def require_muon() -> None:
    """Refuse Muon in one line on a torch without `torch.optim.Muon` (before anything is written).

    Raises:
        ValueError: naming the torch version found and the one needed.
    """
    if not hasattr(torch.optim, "Muon"):
        raise ValueError(f"optimizer: muon needs torch >= {MUON_TORCH} (torch.optim.Muon); this is torch "
                         f"{torch.__version__}: install a newer torch (make ... TORCH='torch>={MUON_TORCH}') or use "
                         "adamw or sgd")


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer `name` (`OPTIMIZERS`) over `model`'s trainable parameters, at peak rate `lr`.

    sgd: momentum 0.9, weight decay on matrices. muon: `torch.optim.Muon` (its default momentum and
    Newton-Schulz steps, `adjust_lr_fn="match_rms_adamw"` so one `lr` suits both halves) on
    `muon_split`'s hidden matrices, AdamW on the rest; the split's counts are logged.
    """
    if name == "adamw":
        return make_adamw(model, lr, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameter_groups(model, weight_decay), lr=lr, momentum=SGD_MOMENTUM, foreach=True)
    if name != "muon":
        raise ValueError(f"optimizer: {name!r} is not one of {', '.join(OPTIMIZERS)}")
    return make_muon(model, lr, lr, weight_decay)


def make_muon(model: nn.Module, lr: float, adamw_lr: float, weight_decay: float,
              adjust_lr_fn: str = "match_rms_adamw") -> MuonWithAdamW:
    """`torch.optim.Muon` at `lr` on `muon_split`'s hidden matrices, AdamW at `adamw_lr` on the rest
    (weight decay on its matrices only), as one optimizer; the split's counts are logged.

    `adjust_lr_fn`: torch's per-matrix rate adjustment: "match_rms_adamw" (0.2 sqrt(max(A, B)): one rate
    suits both halves) or "original" (max(1, A/B)^0.5: Keller Jordan's Muon, whose rates are ~1e-2).
    """
    require_muon()
    muon_names, adamw_names = muon_split(model)
    params = dict(model.named_parameters())
    count = lambda names: sum(params[n].numel() for n in names)  # noqa: E731
    logger.info("muon: %d hidden matrices (%d values); adamw: %d other parameters (%d values)",
                len(muon_names), count(muon_names), len(adamw_names), count(adamw_names))
    if not muon_names:
        raise ValueError(f"optimizer: muon found no hidden matrices in {type(model).__name__}; use adamw")
    muon = torch.optim.Muon([params[n] for n in muon_names], lr=lr, weight_decay=weight_decay,
                            adjust_lr_fn=adjust_lr_fn)
    rest = [params[n] for n in adamw_names]
    adamw = _adamw([{"params": [p for p in rest if p.dim() >= 2], "weight_decay": weight_decay},
                    {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}], adamw_lr)
    return MuonWithAdamW(muon, adamw)
