"""Per-dimension standardization of embeddings, fitted on training rows only."""
from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


class Standardizer:
    """`z = (x - mean) / std` per dimension, and its inverse.

    Fit on the training rows only, so val/test statistics never leak into the model.
    Statistics are computed in float64 and stored as float32 `[D]` arrays, which makes
    every saved form (lists, tensors) round-trip bit for bit.

    Attributes:
        unscaled: `[k]` int64 indices of the constant dimensions, left unscaled (std 1).
    """

    def __init__(self, mean: Any, std: Any, min_std: float = 1e-8) -> None:
        self.mean, std = _vector(mean), _vector(std)
        if self.mean.shape != std.shape:
            raise ValueError(f"mean has shape {self.mean.shape} but std has {std.shape}")
        # A std at or below `min_std` is a constant dimension: saved as 0 (`saved_std`), or as min_std itself
        # by runs saved before `unscaled` existed. It keeps std 1, so loading gives what fitting gives.
        constant = std <= np.float32(min_std)
        self.std = np.where(constant, np.float32(1.0), std)
        self.min_std = float(min_std)
        self.unscaled = np.flatnonzero(constant).astype(np.int64)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def fit(cls, x: np.ndarray | torch.Tensor, min_std: float = 1e-8) -> "Standardizer":
        """Statistics of `x` `[N, D]` (pass the training rows). std is the population std
        (ddof=0, so the fitted rows come out with std exactly 1).

        A dimension that does not vary over `x` keeps std 1 (listed in `unscaled`): it stays
        constant, where dividing by a ~0 std would blow any held-out deviation up to ~1e16."""
        x64 = (x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor)
               else np.asarray(x, dtype=np.float64))
        if x64.ndim != 2 or x64.shape[0] == 0:
            raise ValueError(f"fit needs [N, D] with N >= 1, got shape {x64.shape}")
        mean, std = x64.mean(axis=0), x64.std(axis=0)
        # Float32 rows of one value still differ by rounding (relative eps): a spread that small is no signal.
        constant = (std <= np.finfo(np.float32).eps * np.abs(mean)) | (std <= min_std)
        return cls(mean, np.where(constant, 0.0, std), min_std=min_std)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def transform(self, x: Array) -> Array:
        """`[..., D]` -> standardized `[..., D]`, same type, dtype (floats) and device."""
        mean, std, _ = self._stats_like(x)
        return (x - mean) / std

    def inverse_transform(self, z: Array) -> Array:
        """Undo `transform`: `[..., D]` -> `[..., D]` in the original embedding space. Constant
        dimensions (`unscaled`) come back as their constant, whatever a model put there: a model's
        leftover noise in a dimension the data never varies in is not part of any embedding."""
        mean, _, scale = self._stats_like(z)
        return z * scale + mean

    @property
    def saved_std(self) -> np.ndarray:
        """`[D]` std as saved: 0 marks a constant dimension (read back as one by `__init__`)."""
        saved = self.std.copy()
        saved[self.unscaled] = 0.0
        return saved

    def state_dict(self) -> dict[str, Any]:
        """JSON-friendly: plain float lists."""
        return {"mean": self.mean.tolist(), "std": self.saved_std.tolist(), "min_std": self.min_std}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> "Standardizer":
        return cls(d["mean"], d["std"], min_std=float(d.get("min_std", 1e-8)))

    def to_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """`{prefix+"mean": [D], prefix+"std": [D]}` float32 tensors, e.g. for safetensors."""
        return {prefix + "mean": torch.from_numpy(self.mean.copy()),
                prefix + "std": torch.from_numpy(self.saved_std)}

    @classmethod
    def from_tensors(cls, d: dict[str, torch.Tensor], prefix: str = "") -> "Standardizer":
        return cls(d[prefix + "mean"], d[prefix + "std"])

    def _stats_like(self, x: Any) -> tuple[Any, Any, Any]:
        """mean, std (to divide by) and the inverse's scale (std, 0 in constant dimensions), like `x`."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"data has dimension {x.shape[-1]} but the standardizer was fitted on {self.dim}")
        inverse_scale = self.saved_std
        if isinstance(x, torch.Tensor):
            if not x.is_floating_point():
                raise TypeError(f"expected a floating-point tensor, got {x.dtype}")
            key = (x.device, x.dtype)
            if key not in self._cache:  # avoid a host-to-device copy per batch
                # in float16 a tiny std would round to 0; the dtype's tiny keeps division finite
                like = dict(device=x.device, dtype=x.dtype)
                self._cache[key] = (torch.as_tensor(self.mean, **like),
                                    torch.as_tensor(self.std, **like).clamp_min(torch.finfo(x.dtype).tiny),
                                    torch.as_tensor(inverse_scale, **like))
            return self._cache[key]
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
        std = np.maximum(self.std.astype(dtype), np.finfo(dtype).tiny)
        return self.mean.astype(dtype), std, inverse_scale.astype(dtype)

    @property
    def log_scale(self) -> float:
        """log |det| of `inverse_transform` (sum of log std): densities in the original space are smaller by it."""
        return float(np.log(self.std.astype(np.float64)).sum())

    def __repr__(self) -> str:
        return f"Standardizer(dim={self.dim}, min_std={self.min_std:g})"


def _vector(v: Any) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().double().numpy()
    out = np.asarray(v, dtype=np.float64).astype(np.float32)
    if out.ndim != 1:
        raise ValueError(f"statistics must be 1-D [D], got shape {out.shape}")
    return out


class Whitener:
    """`z = (x - mean) W` with `W = C^(-1/2)` for a shrunk (Ledoit-Wolf) covariance C of the training rows,
    and its inverse `x = z C^(1/2) + mean`: the normalization behind `source: gaussian`.

    A flow from N(0, I) in these coordinates is a flow from N(mean, C) in the original ones (the straight
    path commutes with affine maps: its weights sum to 1), so the network learns only what the fitted
    Gaussian misses. Symmetric (ZCA) roots keep each coordinate near its own dimension. float64 inside.
    Interface as `Standardizer` (`transform`, `inverse_transform`, `mean`, `dim`, `log_scale`, tensors).
    """

    KIND = "whiten"

    def __init__(self, mean: Any, whitening: Any, coloring: Any) -> None:
        as64 = lambda v: torch.as_tensor(np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v),  # noqa: E731
                                         dtype=torch.float64)
        self._mean, self.whitening, self.coloring = as64(mean), as64(whitening), as64(coloring)
        self.mean = self._mean.numpy().astype(np.float32)
        self.unscaled = np.zeros(0, dtype=np.int64)

    @classmethod
    def fit(cls, x: np.ndarray | torch.Tensor) -> "Whitener":
        """Mean and Ledoit-Wolf covariance of `x: [N, D]` (the training rows, original space)."""
        from sklearn.covariance import LedoitWolf

        rows = np.asarray(x.detach().cpu().double() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        fitted = LedoitWolf().fit(rows)
        values, vectors = np.linalg.eigh(fitted.covariance_)
        values = np.maximum(values, np.finfo(np.float64).tiny)
        whitening = (vectors / np.sqrt(values)) @ vectors.T
        coloring = (vectors * np.sqrt(values)) @ vectors.T
        return cls(fitted.location_, whitening, coloring)

    @property
    def dim(self) -> int:
        return int(self._mean.shape[0])

    @property
    def log_scale(self) -> float:
        """log |det C^(1/2)|."""
        return float(torch.linalg.slogdet(self.coloring).logabsdet)

    def _apply(self, x: Array, shift_first: bool, matrix: torch.Tensor) -> Array:
        if x.shape[-1] != self.dim:
            raise ValueError(f"data has dimension {x.shape[-1]} but the whitener was fitted on {self.dim}")
        t = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
        dtype = t.dtype if t.is_floating_point() else torch.float32
        mean, m = self._mean.to(t.device), matrix.to(t.device)
        out = ((t.double() - mean) @ m) if shift_first else (t.double() @ m + mean)
        out = out.to(dtype)
        return out.numpy() if isinstance(x, np.ndarray) else out

    def transform(self, x: Array) -> Array:
        """`[..., D]` -> whitened `[..., D]`, same type, float dtype and device."""
        return self._apply(x, True, self.whitening)

    def inverse_transform(self, z: Array) -> Array:
        """Undo `transform`: `[..., D]` -> the original embedding space."""
        return self._apply(z, False, self.coloring)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self._mean.clone(), "whitening": self.whitening.clone(), "coloring": self.coloring.clone()}

    def __repr__(self) -> str:
        return f"Whitener(dim={self.dim})"


def normalization_from_tensors(tensors: dict[str, torch.Tensor]) -> "Standardizer | Whitener":
    """A run's saved normalization (`normalization.safetensors`): per-dimension statistics (mean, std) or a
    whitening (mean, whitening, coloring)."""
    if "whitening" in tensors:
        return Whitener(tensors["mean"], tensors["whitening"], tensors["coloring"])
    return Standardizer.from_tensors(tensors)

