"""Distributions over the flow time t in [0, 1] used to draw training times."""
from __future__ import annotations

import torch

TIME_SAMPLERS: tuple[str, ...] = ("uniform", "logit_normal")


class TimeSampler:
    """Draws training times t in [0, 1] (t=0 is noise, t=1 is data).

    - `uniform`: t ~ U[0, 1).
    - `logit_normal`: t = sigmoid(z), z ~ N(mean, std^2) (SD3, Esser et al. 2024): it puts
      more training signal on the middle of the path, where the velocity is hardest to predict.
    """

    def __init__(self, name: str = "uniform", mean: float = 0.0, std: float = 1.0) -> None:
        name = name.replace("-", "_")
        if name not in TIME_SAMPLERS:
            raise ValueError(f"unknown time sampler {name!r}; known: {', '.join(TIME_SAMPLERS)}")
        if std <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.name = name
        self.mean = float(mean)
        self.std = float(std)

    @classmethod
    def uniform(cls) -> TimeSampler:
        return cls("uniform")

    @classmethod
    def logit_normal(cls, mean: float = 0.0, std: float = 1.0) -> TimeSampler:
        return cls("logit_normal", mean=mean, std=std)

    def sample(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Draw `[batch_size]` times on `device`.

        With a generator, the draw happens on the generator's device and is then moved, so a
        CPU generator gives the same times whatever device the data lives on.
        """
        draw_device = generator.device if generator is not None else device
        # Draw in float32: low-precision dtypes would make the sigmoid round to exactly 0/1 too often.
        if self.name == "uniform":
            t = torch.rand(batch_size, generator=generator, device=draw_device, dtype=torch.float32)
        else:
            z = torch.randn(batch_size, generator=generator, device=draw_device, dtype=torch.float32)
            t = torch.sigmoid(self.mean + self.std * z)
        return t.to(device=device, dtype=dtype)

    def __repr__(self) -> str:
        if self.name == "uniform":
            return "TimeSampler('uniform')"
        return f"TimeSampler('logit_normal', mean={self.mean}, std={self.std})"


def make_time_sampler(name: str = "uniform", **kwargs: float) -> TimeSampler:
    """Build a sampler by name (`uniform` or `logit_normal`/`logit-normal`); kwargs: mean, std."""
    key = name.replace("-", "_")
    if key not in TIME_SAMPLERS:
        raise ValueError(f"unknown time sampler {name!r}; known: {', '.join(TIME_SAMPLERS)}")
    if key == "uniform" and kwargs:
        raise ValueError(f"the uniform time sampler takes no parameters, got {sorted(kwargs)}")
    return TimeSampler(key, **kwargs)
