"""Embedding data: loading with validation, built-in datasets, splits, dedup, normalization, embedding texts."""
from scaleflow.data.builtin import BUILTIN_DATASETS, load_builtin
from scaleflow.data.dedup import near_duplicate_mask
from scaleflow.data.errors import DataError
from scaleflow.data.loading import EmbeddingSet, check_dimension, load_embeddings, load_texts
from scaleflow.data.normalization import Standardizer
from scaleflow.data.prepare import PreparedData, load_source, prepare_data
from scaleflow.data.splits import Splits, make_splits

__all__ = [
    "BUILTIN_DATASETS", "DataError", "EmbeddingSet", "PreparedData", "Splits", "Standardizer", "check_dimension",
    "load_builtin", "load_embeddings", "load_source", "load_texts", "make_splits", "near_duplicate_mask", "prepare_data",
]
