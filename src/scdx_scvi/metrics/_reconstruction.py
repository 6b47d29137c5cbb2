"""Paired per-feature metrics between observed and predicted profiles of the same cells."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.stats import rankdata

#: Features per block, so that dense copies stay small whatever the number of cells.
_FEATURE_CHUNK = 2048


def log_cp10k(x) -> np.ndarray:
    """Return ``log1p(counts per 10,000)`` of a cells x features matrix (dense output)."""
    x = x.toarray() if sparse.issparse(x) else np.asarray(x, dtype=np.float64)
    totals = x.sum(axis=1, keepdims=True)
    return np.log1p(x / np.maximum(totals, 1e-12) * 1e4)


def _column_blocks(x, n_features: int):
    for start in range(0, n_features, _FEATURE_CHUNK):
        block = x[:, start : start + _FEATURE_CHUNK]
        block = block.toarray() if sparse.issparse(block) else np.asarray(block)
        yield start, block.astype(np.float64, copy=False)


def pearson_per_feature(y_true, y_pred) -> np.ndarray:
    """Pearson correlation of each feature (column) between observed and predicted values.

    Features with zero variance in either matrix get 0, as in the openproblems definition.

    Parameters
    ----------
    y_true, y_pred
        Cells x features, dense or sparse, same shape and cell order.

    Returns
    -------
    One correlation per feature.
    """
    if y_true.shape != y_pred.shape:
        raise ValueError(f"Shapes differ: {y_true.shape} vs {y_pred.shape}.")
    n_features = y_true.shape[1]
    out = np.zeros(n_features)
    pred_blocks = _column_blocks(y_pred, n_features)
    for start, a in _column_blocks(y_true, n_features):
        _, b = next(pred_blocks)
        a = a - a.mean(axis=0)
        b = b - b.mean(axis=0)
        denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(denom > 0, (a * b).sum(axis=0) / denom, 0.0)
        out[start : start + a.shape[1]] = np.clip(r, -1.0, 1.0)
    return out


def auroc_per_feature(y_true, y_score) -> np.ndarray:
    """Area under the ROC curve of each feature, scoring binarised truth (``> 0``) by prediction.

    Computed with the rank-sum (Mann-Whitney) identity, ties counted as one half, as
    :func:`sklearn.metrics.roc_auc_score` does. Features whose truth is all 0 or all 1 get NaN.

    Parameters
    ----------
    y_true
        Cells x features observations (binarised at > 0), dense or sparse.
    y_score
        Cells x features predicted probabilities or scores.

    Returns
    -------
    One AUROC per feature (NaN where undefined).
    """
    if y_true.shape != y_score.shape:
        raise ValueError(f"Shapes differ: {y_true.shape} vs {y_score.shape}.")
    n_features = y_true.shape[1]
    out = np.full(n_features, np.nan)
    score_blocks = _column_blocks(y_score, n_features)
    for start, truth in _column_blocks(y_true, n_features):
        _, score = next(score_blocks)
        positive = truth > 0
        n_pos = positive.sum(axis=0)
        n_neg = positive.shape[0] - n_pos
        ranks = rankdata(score, axis=0)
        rank_sum = np.where(positive, ranks, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        out[start : start + truth.shape[1]] = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    return out


def reconstruction_scores(observed: dict, predicted: dict[str, np.ndarray]) -> dict[str, float]:
    """Summarise paired reconstruction or translation quality, one headline metric per modality.

    Parameters
    ----------
    observed
        ``{modality: cells x features raw counts}`` (dense or sparse).
    predicted
        ``{modality: cells x features predictions}``: expected counts per 10k for ``"rna"`` and
        ``"protein"``, accessibility probabilities for ``"atac"``.

    Returns
    -------
    ``rna_pearson_per_gene`` and ``protein_pearson_per_protein``: mean per-feature Pearson on
    log1p(counts per 10k); ``atac_auroc_per_peak``: mean per-peak AUROC over peaks with both
    classes, with ``atac_peaks_scored`` and the share of accessible entries
    ``atac_prevalence``.
    """
    out: dict[str, float] = {}
    for modality, name in (
        ("rna", "rna_pearson_per_gene"),
        ("protein", "protein_pearson_per_protein"),
    ):
        if modality in predicted:
            r = pearson_per_feature(log_cp10k(observed[modality]), np.log1p(predicted[modality]))
            out[name] = float(r.mean())
    if "atac" in predicted:
        auroc = auroc_per_feature(observed["atac"], predicted["atac"])
        out["atac_auroc_per_peak"] = float(np.nanmean(auroc))
        out["atac_peaks_scored"] = int(np.isfinite(auroc).sum())
        truth = observed["atac"]
        n_open = truth.count_nonzero() if sparse.issparse(truth) else np.count_nonzero(truth)
        out["atac_prevalence"] = float(n_open / np.prod(truth.shape))
    return out
