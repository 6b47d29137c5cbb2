"""Metrics on observed and predicted single-cell profiles, and simple translation controls."""

from ._controls import knn_prediction, mean_profile_prediction
from ._generation import (
    classifier_auc,
    energy_distance,
    generation_scores,
    mixing_score,
    mmd_rbf,
    pca_projection,
    per_group,
)
from ._reconstruction import log_cp10k, reconstruction_scores
from ._translation import (
    auprc_per_feature,
    auroc_auprc_flat,
    auroc_per_feature,
    foscttm,
    knn_label_transfer_accuracy,
    pearson_overall,
    pearson_per_cell,
    pearson_per_feature,
    rmse,
    spearman_overall,
    spearman_per_cell,
    spearman_per_feature,
)

__all__ = [
    "auprc_per_feature",
    "auroc_auprc_flat",
    "auroc_per_feature",
    "classifier_auc",
    "energy_distance",
    "foscttm",
    "generation_scores",
    "knn_label_transfer_accuracy",
    "knn_prediction",
    "log_cp10k",
    "mean_profile_prediction",
    "mixing_score",
    "mmd_rbf",
    "pca_projection",
    "pearson_overall",
    "pearson_per_cell",
    "pearson_per_feature",
    "per_group",
    "reconstruction_scores",
    "rmse",
    "spearman_overall",
    "spearman_per_cell",
    "spearman_per_feature",
]
