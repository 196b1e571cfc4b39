"""Mamba's selective scan (S6), in pure PyTorch, with an optional CUDA kernel from `mamba_ssm`.

The recurrence, per batch row b, channel d and state n (A is diagonal):

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,      h_{-1} = 0
    y_t = sum_n C_t[n] * h_t[n] + D * u_t
    out = y * silu(z)                                             (if z is given)

Shapes follow `mamba_ssm.ops.selective_scan_interface.selective_scan_fn`, so the two are
interchangeable:

    u, delta, z: [batch, d_inner, L]     A: [d_inner, N]     B, C: [batch, N, L]     D: [d_inner]

Only real A and input-dependent B, C (the variant Mamba blocks use) are supported.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=1)
def _mamba_ssm_scan():
    """The CUDA `selective_scan_fn`, or None when `mamba_ssm` cannot be loaded.

    Imported lazily: `mamba_ssm` is an optional extra, and a broken CUDA build raises
    OSError (missing .so) or other errors at import, not just ImportError.
    """
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, OSError, RuntimeError from a mismatched build
        return None
    return selective_scan_fn


def mamba_ssm_available() -> bool:
    """True when the `mamba_ssm` CUDA scan can be imported."""
    return _mamba_ssm_scan() is not None


def selective_scan_backend(device: torch.device | str) -> str:
    """Which implementation `selective_scan` uses for tensors on `device`: "mamba_ssm" or "torch"."""
    if torch.device(device).type == "cuda" and mamba_ssm_available():
        return "mamba_ssm"
    return "torch"


def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Pure-PyTorch selective scan: a loop over L of batched ops over (batch, d_inner, N).

    For the short sequences used here (L = 16..64) the sequential loop does O(L) work on
    large slabs and beats a log-depth parallel scan, which does O(L log L) work.

    Args:
        u: `[batch, d_inner, L]` input.
        delta: `[batch, d_inner, L]` step sizes (before `delta_bias`/softplus if those are given).
        A: `[d_inner, N]` diagonal state matrix (negative for a stable scan).
        B, C: `[batch, N, L]` input-dependent input/output projections.
        D: optional `[d_inner]` skip connection.
        z: optional `[batch, d_inner, L]` gate, applied as `y * silu(z)`.
        delta_bias: optional `[d_inner]` added to delta (as in `selective_scan_fn`).
        delta_softplus: apply softplus to delta (after the bias).

    Returns:
        `[batch, d_inner, L]` output in `u`'s dtype.
    """
    if A.is_complex() or B.dim() != 3 or C.dim() != 3:
        raise NotImplementedError("selective_scan_torch supports real A and B, C of shape [batch, N, L]")
    with torch.autocast(u.device.type, enabled=False):  # the fp32 math below must stay fp32
        return _selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    dtype_in = u.dtype
    # Accumulate in at least fp32 (as mamba's reference does); keep fp64 when given fp64.
    wdtype = torch.promote_types(torch.promote_types(u.dtype, delta.dtype), torch.float32)
    u, delta, A, B, C = (x.to(wdtype) for x in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(wdtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    # The recurrence proper is a custom autograd Function: autograd through a Python loop
    # that indexes [L, ...] tensors materializes a full-size zero gradient per step.
    if torch.is_grad_enabled() and any(x.requires_grad for x in (u, delta, A, B, C)):
        y = _LinearScan.apply(u, delta, A, B, C)                  # [b, d, L]
    else:  # inference (e.g. ODE sampling): no states kept
        y = _scan_forward(u, delta, A, B, C, keep_states=False)[0]

    if D is not None:
        y = y + u * D.to(wdtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(wdtype))
    return y.to(dtype_in)


def _scan_forward(u, delta, A, B, C, keep_states: bool):
    """Run the recurrence one `[b, d, N]` slab per step with `out=`/in-place ops.

    Fresh large tensors are expensive on CPU (page faults on every new allocation), so the
    loop reuses a few preallocated slabs instead of allocating temporaries per step.

    Returns `y: [b, d, L]` and, for backward, the time-major `(dt, du, Bt, Ct, H)` with every
    state `H: [L, b, d, N]` when `keep_states`; without it (inference) only one slab is live.
    """
    dt = delta.permute(2, 0, 1).contiguous()                      # [L, b, d]
    du = dt * u.permute(2, 0, 1)                                  # [L, b, d]
    Bt = B.permute(2, 0, 1).contiguous()                          # [L, b, N]
    Ct = C.permute(2, 0, 1).contiguous()                          # [L, b, N]
    L, b, d = dt.shape
    H = dt.new_empty(L if keep_states else 1, b, d, A.shape[1])
    decay = torch.empty_like(H[0])
    y = dt.new_empty(L, b, d)
    for t in range(L):
        # h_t = exp(dt_t A) * h_{t-1} + du_t B_t, the last term an outer product over (d, N)
        du_t, B_t = du[t].unsqueeze(-1), Bt[t].unsqueeze(1)
        h = H[t] if keep_states else H[0]
        if t == 0:
            torch.mul(du_t, B_t, out=h)                           # h_{-1} = 0
        else:
            torch.mul(dt[t].unsqueeze(-1), A, out=decay).exp_()
            if keep_states:
                torch.mul(du_t, B_t, out=h).addcmul_(decay, H[t - 1])
            else:
                h.mul_(decay).addcmul_(du_t, B_t)
        torch.bmm(h, Ct[t].unsqueeze(-1), out=y[t].unsqueeze(-1))   # y_t = C_t . h_t
    return y.permute(1, 2, 0), (dt, du, Bt, Ct, H)


class _LinearScan(torch.autograd.Function):
    """`y_t = C_t . h_t` with `h_t = exp(delta_t A) * h_{t-1} + delta_t u_t B_t`, `h_{-1} = 0`.

    Forward keeps every state (needed for the A/delta and C gradients). Backward recomputes
    the decays instead of storing them and runs the adjoint recurrence in reverse:
    `g_t = C_t gy_t + exp(delta_{t+1} A) * g_{t+1}`, where `g_t = dLoss/dh_t`.
    Inputs: u, delta `[b, d, L]`, A `[d, N]`, B, C `[b, N, L]`; output `[b, d, L]`.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        y, saved = _scan_forward(u, delta, A, B, C, keep_states=True)
        ctx.save_for_backward(u, A, *saved)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        with torch.autocast(grad_y.device.type, enabled=False):
            return _scan_backward(grad_y, *ctx.saved_tensors)


def _scan_backward(grad_y, u, A, dt, du, Bt, Ct, H):
    """Gradients of `_LinearScan` w.r.t. (u, delta, A, B, C); `grad_y: [b, d, L]`."""
    gy = grad_y.to(dt.dtype).permute(2, 0, 1).contiguous()    # [L, b, d]
    g_du, g_dt = torch.empty_like(dt), torch.zeros_like(dt)   # g_dt[0] gets no decay term
    g_B, g_C = torch.empty_like(Bt), torch.empty_like(Ct)
    gh = torch.zeros_like(H[0])                               # g_t, [b, d, N]
    g_A = torch.zeros_like(H[0])                              # per-row dA, summed at the end
    decay, w = torch.empty_like(gh), torch.empty_like(gh)
    for t in reversed(range(dt.shape[0])):
        torch.bmm(gy[t].unsqueeze(1), H[t], out=g_C[t].unsqueeze(1))
        gh.addcmul_(gy[t].unsqueeze(-1), Ct[t].unsqueeze(1))
        # h_t's drive du_t B_t: contract g_t over N for du, over d for B.
        torch.bmm(gh, Bt[t].unsqueeze(-1), out=g_du[t].unsqueeze(-1))
        torch.bmm(du[t].unsqueeze(1), gh, out=g_B[t].unsqueeze(1))
        if t:
            torch.mul(dt[t].unsqueeze(-1), A, out=decay).exp_()
            torch.mul(gh, H[t - 1], out=w).mul_(decay)        # dLoss/d(dt_t A)
            g_A.addcmul_(w, dt[t].unsqueeze(-1))
            torch.sum(w.mul_(A), dim=-1, out=g_dt[t])
            gh.mul_(decay)                                    # carry g_t to h_{t-1}
    g_dt.addcmul_(g_du, u.permute(2, 0, 1))                   # du = dt * u
    g_u = g_du.mul_(dt)
    return (g_u.permute(1, 2, 0), g_dt.permute(1, 2, 0), g_A.sum(0),
            g_B.permute(1, 2, 0), g_C.permute(1, 2, 0))


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Selective scan with `selective_scan_fn`'s signature: the `mamba_ssm` kernel on CUDA when
    available, else `selective_scan_torch`. Shapes as in `selective_scan_torch`."""
    if u.is_cuda:
        fn = _mamba_ssm_scan()
        if fn is not None:
            # The kernel wants contiguous inputs with L innermost.
            return fn(
                u.contiguous(), delta.contiguous(), A.float().contiguous(), B.contiguous(), C.contiguous(),
                D=None if D is None else D.float(), z=None if z is None else z.contiguous(),
                delta_bias=None if delta_bias is None else delta_bias.float(),
                delta_softplus=delta_softplus,
            )
    return selective_scan_torch(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                delta_softplus=delta_softplus)
