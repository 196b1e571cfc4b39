"""Data augmentation for the data rows x1 of a flow: mixup -> Gaussian noise -> dimension dropout.

Apply it to the data samples x1 only, before coupling, and never to the noise x0: x0 must stay an
exact draw from the source distribution, or the learned flow starts from the wrong place. The caller
(the trainer) is responsible for passing only data rows. The data lives in the standardized space
(`Standardizer`), so a noise std and a dropped entry's 0 are both measured against the training
mean and std of each dimension.

The order is fixed: mixup first (it mixes clean rows), then noise (so a mixed row is noised once),
then dropout last (so a dropped entry is exactly 0, with or without noise).

Dimension dropout zeroes entries and does NOT rescale the kept ones by 1/(1-rate): in the
standardized space 0 is the training mean of that dimension, so a dropped entry means "unknown, at
its mean", and every kept entry is a real data value. Inverted dropout would instead widen each
kept entry by 1/(1-rate) and teach the flow a distribution wider than the data.

Spec strings (the CLI's `--aug`): "mixup,noise" (defaults), "mixup=0.4,noise=0.05,dropout=0.2",
"" or "none" (off).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from scaleflow.data.errors import DataError

DEFAULTS = {"mixup": 0.2, "noise": 0.1, "dropout": 0.1}  # spec name -> default value
_FIELDS = {"mixup": "mixup_alpha", "noise": "noise_std", "dropout": "dropout_rate"}  # spec name -> attribute
ALLOWED = ('allowed: mixup[=alpha>0], noise[=std>=0], dropout[=rate in [0, 1)], comma-separated, '
           'each at most once; "" or "none" for off')


def _range_error(name: str, value: float) -> str | None:
    """Why `value` is out of range for the part `name`, or None when it is fine."""
    if not math.isfinite(value):
        return f"{name} must be a finite number"
    if name == "mixup" and value <= 0:
        return "mixup alpha must be > 0"
    if name == "noise" and value < 0:
        return "noise std must be >= 0"
    if name == "dropout" and not 0 <= value < 1:
        return "dropout rate must be in [0, 1)"
    return None


@dataclass(frozen=True)
class Augmentation:
    """Augmentation of data rows x1; each part is off when its value is None.

    Attributes:
        mixup_alpha: lambda ~ Beta(alpha, alpha) per row; row i becomes
            `lambda_i * x[i] + (1 - lambda_i) * x[perm[i]]` for a random permutation `perm` of the batch.
        noise_std: adds `std * eps`, eps ~ N(0, 1), in the standardized space.
        dropout_rate: zeroes each entry with this probability (no rescaling of the kept entries).
    """

    mixup_alpha: float | None = None
    noise_std: float | None = None
    dropout_rate: float | None = None

    def __post_init__(self) -> None:
        for name, attr in _FIELDS.items():
            value = getattr(self, attr)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(f"Augmentation.{attr} must be a number or None, got {value!r}")
            why = _range_error(name, float(value))
            if why:
                raise DataError(f"Augmentation.{attr}={value!r}: {why}")
            object.__setattr__(self, attr, float(value))  # 1 and 1.0 give one canonical spec

    @classmethod
    def parse(cls, spec: str | None) -> "Augmentation":
        """`--aug` string -> Augmentation. Raises `DataError` (a ValueError) naming `--aug` and the bad part."""
        if spec is None or spec.strip().lower() in ("", "none"):
            return cls()
        values: dict[str, float] = {}
        for part in spec.split(","):
            name, sep, text = (s.strip() for s in part.partition("="))
            name = name.lower()
            bad = f"--aug {spec!r}: bad part {part.strip()!r}"
            if name not in DEFAULTS:
                raise DataError(f"{bad}: unknown augmentation {name!r} ({ALLOWED})")
            if name in values:
                raise DataError(f"{bad}: {name} is given twice ({ALLOWED})")
            try:
                value = float(text) if sep else DEFAULTS[name]
            except ValueError:
                raise DataError(f"{bad}: {text!r} is not a number ({ALLOWED})") from None
            why = _range_error(name, value)
            if why:
                raise DataError(f"{bad}: {why} ({ALLOWED})")
            values[name] = value
        return cls(**{_FIELDS[name]: value for name, value in values.items()})

    def to_spec(self) -> str:
        """Canonical spec: the parts that are on, in the applied order, each with its value; "" when off.
        `repr` of a float reads back bit for bit, so `parse(a.to_spec()) == a`."""
        parts = [f"{name}={getattr(self, attr)!r}" for name, attr in _FIELDS.items()
                 if getattr(self, attr) is not None]
        return ",".join(parts)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def __call__(self, x1: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment data rows `x1: [B, D]` -> `[B, D]`, same dtype and device; `x1` is not modified.

        Draws only from `generator` (which must be on x1's device; the global RNG when None), in the
        order mixup (permutation, then lambdas), noise, dropout. Returns `x1` itself, drawing nothing,
        when off.
        """
        if not self.enabled:
            return x1
        if x1.ndim != 2 or not x1.is_floating_point():
            raise ValueError(f"augmentation needs floating-point rows [B, D], got {x1.dtype} {tuple(x1.shape)}")
        if generator is not None and generator.device.type != x1.device.type:
            raise ValueError(f"the generator is on {generator.device} but the data is on {x1.device}")
        x = x1
        if self.mixup_alpha is not None:
            lam, perm = mixup_draws(x.shape[0], self.mixup_alpha, generator, x.device)
            lam = lam.to(x.dtype)[:, None]
            x = lam * x + (1 - lam) * x[perm]
        if self.noise_std is not None:
            x = x + self.noise_std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if self.dropout_rate is not None:
            x = x.masked_fill(drop_mask(x.shape, self.dropout_rate, generator, x.device), 0.0)
        return x


def mixup_draws(batch: int, alpha: float, generator: torch.Generator | None,
                device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup's draws for a batch: `lam: [B]` float64 ~ Beta(alpha, alpha) and `perm: [B]` a permutation.

    Beta(a, a) = G1 / (G1 + G2) with G ~ Gamma(a); for small a a Gamma draw underflows to 0 (0/0),
    so it is drawn in log space: log Gamma(a) = log Gamma(a + 1) + log(U) / a, U ~ Uniform(0, 1].
    """
    perm = torch.randperm(batch, generator=generator, device=device)
    concentration = torch.full((batch, 2), alpha + 1.0, dtype=torch.float64, device=device)
    gamma = torch._standard_gamma(concentration, generator=generator)
    u = torch.rand((batch, 2), generator=generator, dtype=torch.float64, device=device)
    log_g = gamma.log() + torch.log1p(-u) / alpha  # 1 - u lies in (0, 1]: no log(0)
    return torch.sigmoid(log_g[:, 0] - log_g[:, 1]), perm


def drop_mask(shape: torch.Size | tuple[int, ...], rate: float, generator: torch.Generator | None,
              device: torch.device | str) -> torch.Tensor:
    """Bool mask `[B, D]`, True (drop) with probability `rate` per entry. Uniforms are float32 whatever
    the data's dtype, so a half-precision batch drops at the same rate."""
    return torch.rand(shape, generator=generator, dtype=torch.float32, device=device) < rate
