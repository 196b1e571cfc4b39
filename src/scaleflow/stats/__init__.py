"""Statistics that evaluation, sweeps and search share: means and t intervals over seeds, paired and Welch
differences, Holm's adjustment, and the percentile bootstrap. Depends on nothing of scaleflow's."""
from scaleflow.stats.bootstrap import bootstrap_ci
from scaleflow.stats.intervals import (LEVEL, Difference, decide, holm, mean_interval, paired_difference,
                                       seed_difference, verdict, welch_difference)

__all__ = ["LEVEL", "Difference", "bootstrap_ci", "decide", "holm", "mean_interval", "paired_difference",
           "seed_difference", "verdict", "welch_difference"]
