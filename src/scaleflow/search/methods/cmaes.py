"""CMA-ES (the `cma` package) in the prior's normalized space: a model-free baseline."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from scaleflow.search.methods.base import History, Proposal, register
from scaleflow.search.methods.common import OVERSAMPLE
from scaleflow.search.report import INITIAL

REPLAY_TOLERANCE = 1e-4  # asked solutions vs. recorded candidates, after the float32 normalization round trip


def _method_batches(history: History, name: str) -> list[torch.Tensor]:
    """Row indices of each of `name`'s batches, in step order."""
    steps = sorted({s for s, m in zip(history.steps, history.methods) if m == name})
    return [torch.tensor([i for i, (s, m) in enumerate(zip(history.steps, history.methods)) if s == step and m == name])
            for step in steps]


@register("cmaes")
@dataclass
class CMAES:
    """CMA-ES over the normalized embedding space (`problem.to_normalized`: each dimension has unit std
    over the prior's training rows), maximizing the score.

    x0 is the best-scoring row of the initial design, sigma0 = `sigma0` (0.5: half a training row's std
    per dimension), popsize = the batch size (the method's first batch; `n` before it), the `cma` seed
    from the search seed. `cma` keeps a state that cannot be stored in the records, so every call rebuilds
    it: a fresh `CMAEvolutionStrategy`, then for each of this method's past batches `ask()` (deterministic
    given the seed) and `tell` the asked solutions with the recorded scores (negated: `cma` minimizes).
    The asked solutions must match the recorded candidates (to `REPLAY_TOLERANCE`, after the round trip
    through the original space); otherwise a `RuntimeError` says the replay diverged.

    A batch shorter than popsize (the budget's end) is the first `n` of a full `ask()`. Replayed (a budget
    raised later), its solutions are told alone when there are at least mu of them (cma accepts that),
    otherwise that generation is not told and the next `ask()` samples the same distribution again.

    `cma` draws from numpy's global generator (`np.random.seed(seed)` at construction); its state is saved
    and restored around each call, so nothing else sees the reseeding.

    The free filter (`oversample` > 1, as `guided` has), as cma's own rejection sampling
    (`ask_and_eval` with `is_feasible`): after a generation's `ask()`, each solution the judge would not
    count is sampled again from the same distribution (`ask(1)` for each rejected one), for up to
    `oversample - 1` rounds (at most `oversample * popsize` draws); what is left rejected after them is
    scored as it is. Rejected draws are never scored nor told (cma accepts several asks before one tell;
    a generation is told the solutions that were scored, with their scores), so the rule costs no
    evaluation and the replay redraws exactly what the first run redrew. `sigma0` is the knob to tune.
    """

    sigma0: float = 0.5
    oversample: int = OVERSAMPLE
    name: str = "cmaes"

    def propose(self, problem, history: History, n: int, seed: int, step: int) -> Proposal:
        import cma

        initial = [i for i, m in enumerate(history.methods) if m == INITIAL]
        if not initial:
            raise ValueError("cmaes starts from the initial design's best row; the history has no initial design")
        scores = history.y
        x0_row = initial[int(torch.argmax(scores[initial]))]
        x0 = problem.to_normalized(history.x[x0_row:x0_row + 1].double())[0].numpy()
        batches = _method_batches(history, self.name)
        popsize = len(batches[0]) if batches else n
        if n > popsize:
            raise ValueError(f"cmaes has population size {popsize} (its first batch); {n} candidates were asked")
        scaled = np.ones(problem.dim, dtype=bool)  # constant dimensions come back constant: not compared
        scaled[np.asarray(getattr(problem.run.standardizer, "unscaled", []), dtype=np.int64)] = False

        numpy_state = np.random.get_state()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # cma's notes on short tells and flat fitness
                # Step size by cumulative step-size adaptation: cma's default in high dimension (TPA) needs the
                # two "mean shift" solutions of each generation told first, which the redraws below could replace.
                es = cma.CMAEvolutionStrategy(x0, self.sigma0, {"seed": self._cma_seed(seed), "popsize": popsize,
                                                                 "verbose": -9,
                                                                 "AdaptSigma": cma.sigma_adaptation.CMAAdaptSigmaCSA})
                for rows in batches:
                    asked, _ = self._generation(es, problem)
                    recorded = problem.to_normalized(history.x[rows].double()).numpy()
                    k = len(rows)
                    gap = np.abs(asked[:k] - recorded)[:, scaled]
                    limit = REPLAY_TOLERANCE * (1.0 + np.abs(recorded[:, scaled]))
                    if not np.all(gap <= limit):
                        raise RuntimeError(
                            f"cmaes replay diverged at step {history.steps[int(rows[0])]}: the solutions cma "
                            f"asks differ from the recorded candidates by up to {gap.max():.3g} (tolerance "
                            f"{REPLAY_TOLERANCE:g}); cma's sampling is not deterministic here, or the "
                            "records were written by another configuration (sigma0, seed, popsize)")
                    if k >= es.sp.weights.mu:
                        es.tell(list(asked[:k]), (-scores[rows]).tolist())
                x, info = self._generation(es, problem)
                x = x[:n]
                sigma = float(es.sigma)
        finally:
            np.random.set_state(numpy_state)
        z = torch.as_tensor(x, dtype=torch.float64)
        return Proposal(problem.to_original(z).float(), [None] * n,
                        {"sigma": sigma, "generation": len(batches), **info})

    def _generation(self, es, problem) -> tuple[np.ndarray, dict]:
        """One generation's solutions `[popsize, D]` (normalized space), rejected ones redrawn (class docstring)."""
        asked = np.asarray(es.ask())
        if self.oversample == 1:
            return asked, {}
        counts = self._counts(problem, asked)
        drawn, drawn_counted = len(asked), int(counts.sum())
        for _ in range(self.oversample - 1):
            rejected = np.flatnonzero(~counts)
            if not len(rejected):
                break
            redrawn = np.asarray([es.ask(1)[0] for _ in rejected])  # one at a time: cma's supported way to ask again
            asked[rejected] = redrawn
            counts[rejected] = self._counts(problem, redrawn)
            drawn, drawn_counted = drawn + len(rejected), drawn_counted + int(counts[rejected].sum())
        return asked, {"drawn": drawn, "drawn_counted": drawn_counted, "chosen_counted": int(counts.sum())}

    @staticmethod
    def _counts(problem, z: np.ndarray) -> np.ndarray:
        """`[k]` bool: whether the judge counts normalized-space solutions `z: [k, D]`."""
        x = problem.to_original(torch.as_tensor(z, dtype=torch.float64)).float()
        return problem.free_counts(x).numpy().copy()

    @staticmethod
    def _cma_seed(seed: int) -> int:
        """cma reads seed 0 as 'seed from the clock': shift every search seed to a positive one."""
        return int(seed) % (2 ** 31 - 2) + 1
