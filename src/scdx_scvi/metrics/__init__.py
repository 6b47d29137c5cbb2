"""Metrics on observed and predicted single-cell profiles."""

from ._reconstruction import (
    auroc_per_feature,
    log_cp10k,
    pearson_per_feature,
    reconstruction_scores,
)

__all__ = ["auroc_per_feature", "log_cp10k", "pearson_per_feature", "reconstruction_scores"]
