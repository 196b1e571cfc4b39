"""Judging generated embeddings against held-out data, each metric next to its real-vs-real floor."""
from scaleflow.stats.bootstrap import bootstrap_ci
from scaleflow.evaluation.distribution import frechet_distance, mmd_rbf
from scaleflow.evaluation.diversity import mean_pairwise_cosine_distance, norm_and_cosine_stats
from scaleflow.evaluation.evaluate import METRICS, evaluate
from scaleflow.evaluation.frechet import frechet_distance_infinite, frechet_infinite_with_floor, frechet_with_floor
from scaleflow.evaluation.memorization import memorization_rate, nearest_neighbor_distances
from scaleflow.evaluation.prdc import precision_recall_density_coverage
from scaleflow.evaluation.ranking import worst_ratio
from scaleflow.evaluation.scores import score_samples
from scaleflow.evaluation.validity import ValidityResult, validity, validity_threshold

__all__ = ["METRICS", "ValidityResult", "bootstrap_ci", "evaluate", "frechet_distance", "frechet_distance_infinite",
           "frechet_infinite_with_floor", "frechet_with_floor", "mean_pairwise_cosine_distance", "memorization_rate",
           "mmd_rbf", "nearest_neighbor_distances", "norm_and_cosine_stats", "precision_recall_density_coverage",
           "score_samples", "validity", "validity_threshold", "worst_ratio"]
