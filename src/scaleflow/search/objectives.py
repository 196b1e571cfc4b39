"""Black-box objectives of guided search: what is being maximized, and calling it safely.

An objective takes original-space embeddings `x: [N, D]` (and, where the data has texts and the
function accepts them, `texts`: N strings or None per row) and returns scores `[N]`, higher is better.
It is expensive and treated as a black box: only its values are used (guides get their gradients
from the GP). `checked_scores` turns every way one can go wrong (exception, wrong shape, NaN, timeout)
into one `ObjectiveError` line, so the search loop can stop and keep what it recorded.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import threading
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor


class ObjectiveError(RuntimeError):
    """The objective failed; the message is one line naming the objective and what went wrong."""


def load_objective(spec: str, option: str = "--objective") -> Callable:
    """The function named by `MODULE:FUNCTION` (an importable module) or `path/to/file.py:FUNCTION`;
    errors name `option`, the flag the user gave it with."""
    module_name, sep, function = spec.rpartition(":")
    if not sep or not module_name or not function:
        builtins = " (or a built-in: target, category, two-category)" if option == "--objective" else ""
        raise ObjectiveError(f"{option} {spec!r}: expected MODULE:FUNCTION or path/to/file.py:FUNCTION{builtins}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ObjectiveError(f"{option} {spec!r}: no such file {path}")
            name = f"scaleflow_objective_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module  # as `import` does: dataclasses and pickling look the module up there
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            module = importlib.import_module(module_name)
    except ObjectiveError:
        raise
    except Exception as err:  # the user's module failed to import: say so in one line
        raise ObjectiveError(f"{option} {spec!r}: importing {module_name} failed: "
                             f"{type(err).__name__}: {' '.join(str(err).split())[:300]}") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ObjectiveError(f"{option} {spec!r}: {module_name} has no function {function!r}")
    return fn


def _takes_texts(fn: Callable) -> bool:
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "texts" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


class Objective:
    """A named objective function `f(x: [N, D], texts=None) -> [N]` with the checks of the search loop.

    Args:
        fn: the function; it may return a tensor, a numpy array or a list.
        name: how messages and records call it.
        timeout: seconds one call may take (None: no limit).
        optimum: the best possible value where known (built-in objectives), for reports.
    """

    def __init__(self, fn: Callable, name: str, timeout: Optional[float] = None,
                 optimum: Optional[float] = None) -> None:
        self.fn, self.name, self.timeout, self.optimum = fn, name, timeout, optimum
        self.takes_texts = _takes_texts(fn)

    def _call(self, x: Tensor, texts: Optional[list]) -> object:
        if self.takes_texts:
            return self.fn(x, texts=texts)
        return self.fn(x)

    def __call__(self, x: Tensor, texts: Optional[list] = None) -> Tensor:
        """Scores `[N]` (float64) of `x: [N, D]`; raises `ObjectiveError` (one line) on any failure."""
        result: dict = {}

        def target() -> None:
            try:
                result["value"] = self._call(x.detach().clone(), texts)
            except BaseException as err:  # reported below, in the caller's thread
                result["error"] = err

        if self.timeout is None:
            target()
        else:
            # The objective runs in a daemon thread: a call that never returns cannot be killed, but the
            # loop stops waiting for it and exits with what it recorded.
            worker = threading.Thread(target=target, daemon=True)
            worker.start()
            worker.join(self.timeout)
            if worker.is_alive():
                raise ObjectiveError(f"objective {self.name}: no answer within {self.timeout:g} s "
                                     f"(--objective-timeout)")
        if "error" in result:
            err = result["error"]
            if isinstance(err, KeyboardInterrupt):
                raise err
            raise ObjectiveError(f"objective {self.name} raised {type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''}".rstrip(": "))
        return self._check(result["value"], x.shape[0])

    def _check(self, value: object, n: int) -> Tensor:
        try:
            scores = torch.as_tensor(np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value,
                                                dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ObjectiveError(f"objective {self.name} returned {type(value).__name__}, not numbers: {err}") from None
        if scores.ndim == 2 and scores.shape[1] == 1:
            scores = scores[:, 0]
        if tuple(scores.shape) != (n,):
            raise ObjectiveError(f"objective {self.name} returned shape {tuple(scores.shape)} for {n} embeddings; "
                                 f"expected [{n}]")
        bad = ~torch.isfinite(scores)
        if bool(bad.any()):
            raise ObjectiveError(f"objective {self.name} returned {int(bad.sum())} non-finite score(s) "
                                 f"(NaN or inf) for {n} embeddings")
        return scores


def cosine_to(target: Tensor) -> Callable[[Tensor], Tensor]:
    """The objective `x: [N, D] -> [N]`: cosine similarity of each row to `target: [D]` (optimum 1)."""
    direction = torch.nn.functional.normalize(target.detach().to(torch.float64), dim=0)

    def cosine(x: Tensor) -> Tensor:
        return torch.nn.functional.normalize(x.to(torch.float64), dim=1) @ direction.to(x.device)

    return cosine
