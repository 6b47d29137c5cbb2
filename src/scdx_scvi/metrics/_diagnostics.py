"""Profile diagnostics of generated cells: where a set of cells differs from real cells.

A classifier that tells generated cells from real ones says *that* they differ; these
diagnostics say *how*, on the raw counts and per feature, so that a gap can be attributed to the
decoder and its likelihood (it shows in the autoencoder's own reconstruction samples too) or to
the diffusion (it shows only in generated cells):

* per cell: library size (total counts; for ATAC the number of open peaks) and detected features
  (features with a count above 0: genes, open peaks, proteins above 0);
* per feature: mean, variance and zero fraction, and the mean-variance relation (the slope of
  log variance on log mean across features);
* for protein, the background: the median over proteins of each protein's 10th percentile of
  log1p counts (the ambient level that totalVI models as a separate component).

Each set is summarised by medians, by its ratios to the real cells and by the agreement of its
per-feature statistics with theirs, overall and per cell type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse

from ._embedding import binarised, check_modality
from ._translation import _as_matrix

#: Cells a cell type needs in both sets to be compared in ``per_type``.
MIN_TYPE_CELLS = 20


def _cell_stats(x: sparse.csr_matrix, modality: str) -> dict[str, np.ndarray]:
    detected = np.diff(binarised(x).indptr)
    library = detected if modality == "atac" else np.asarray(x.sum(axis=1)).ravel()
    return {"library_size": library.astype(np.float64), "detected": detected.astype(np.float64)}


def _feature_stats(x: sparse.csr_matrix, modality: str) -> dict[str, np.ndarray]:
    if modality == "atac":
        x = binarised(x)
    x = x.astype(np.float64)
    mean = np.asarray(x.mean(axis=0)).ravel()
    variance = np.asarray(x.multiply(x).mean(axis=0)).ravel() - mean**2
    zero = 1.0 - np.asarray((x > 0).mean(axis=0)).ravel()
    return {"mean": mean, "variance": np.maximum(variance, 0.0), "zero_fraction": zero}


def _mean_variance_slope(mean: np.ndarray, variance: np.ndarray) -> float:
    """Slope of log variance on log mean over the features with both above 0."""
    keep = (mean > 0) & (variance > 0)
    if keep.sum() < 3:
        return float("nan")
    return float(np.polyfit(np.log(mean[keep]), np.log(variance[keep]), 1)[0])


def _log_correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.log1p(a), np.log1p(b)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _background(x: sparse.csr_matrix) -> float:
    dense = np.log1p(x.toarray().astype(np.float64))
    return float(np.median(np.percentile(dense, 10, axis=0)))


def _summary(x: sparse.csr_matrix, modality: str) -> dict[str, Any]:
    cells, features = _cell_stats(x, modality), _feature_stats(x, modality)
    out = {
        "library_size_median": float(np.median(cells["library_size"])),
        "detected_median": float(np.median(cells["detected"])),
        "mean_variance_slope": _mean_variance_slope(features["mean"], features["variance"]),
        "_features": features,
    }
    if modality == "protein":
        out["background"] = _background(x)
    return out


def _compare(summary: dict, real: dict) -> dict[str, float]:
    ratio = {
        f"{key}_ratio": summary[key] / real[key] if real[key] else float("nan")
        for key in ("library_size_median", "detected_median")
    }
    ours, theirs = summary["_features"], real["_features"]
    return {
        **{k: v for k, v in summary.items() if not k.startswith("_")},
        **ratio,
        "feature_mean_log_pearson": _log_correlation(ours["mean"], theirs["mean"]),
        "feature_variance_log_pearson": _log_correlation(ours["variance"], theirs["variance"]),
        "zero_fraction_mae": float(np.abs(ours["zero_fraction"] - theirs["zero_fraction"]).mean()),
    }


def profile_diagnostics(
    real: Any,
    sets: Mapping[str, Any],
    modality: str,
    real_labels: Sequence[Any] | None = None,
    set_labels: Mapping[str, Sequence[Any] | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Compare the count profiles of sets of cells with real cells, overall and per cell type.

    Parameters
    ----------
    real
        Real cells (e.g. held-out cells), raw counts (cells x features).
    sets
        ``{name: cells x features raw counts}``: generated cells, the autoencoder's
        reconstruction samples (the ceiling the decoder sets), another model's samples.
    modality
        ``"rna"``, ``"protein"`` or ``"atac"`` (ATAC is binarised: library size = open peaks).
    real_labels, set_labels
        Cell types of the real cells and ``{name: labels}`` of the sets; with both, each set
        also gets ``per_type``: the library-size and detected-feature ratios of each cell type
        with at least 20 cells in both.

    Returns
    -------
    ``{"real": summary, name: summary and comparison}``. Summaries: ``library_size_median``,
    ``detected_median``, ``mean_variance_slope`` (and ``background`` for protein).
    Comparisons: ``library_size_median_ratio`` and ``detected_median_ratio`` (set / real; 1 is
    ideal), ``feature_mean_log_pearson`` and ``feature_variance_log_pearson`` (Pearson of the
    log1p per-feature means and variances with the real ones; 1 is ideal) and
    ``zero_fraction_mae`` (mean absolute difference of the per-feature zero fractions; 0 is
    ideal).

    Examples
    --------
    >>> diagnostics = profile_diagnostics(test["atac"].X, {"SCDX": generated["atac"].X}, "atac")
    >>> diagnostics["SCDX"]["detected_median_ratio"]  # open peaks per cell, generated / real
    """
    check_modality(modality)
    real = sparse.csr_matrix(_as_matrix(real))
    reference = _summary(real, modality)
    out: dict[str, dict[str, Any]] = {
        "real": {k: v for k, v in reference.items() if not k.startswith("_")}
    }
    for name, cells in sets.items():
        cells = sparse.csr_matrix(_as_matrix(cells))
        if cells.shape[1] != real.shape[1]:
            raise ValueError(
                f"sets[{name!r}] has {cells.shape[1]} features, the real cells {real.shape[1]}."
            )
        out[name] = _compare(_summary(cells, modality), reference)
        labels = (set_labels or {}).get(name)
        if real_labels is not None and labels is not None:
            out[name]["per_type"] = _per_type(real, real_labels, cells, labels, modality)
    return out


def _per_type(
    real: sparse.csr_matrix,
    real_labels: Sequence[Any],
    cells: sparse.csr_matrix,
    labels: Sequence[Any],
    modality: str,
) -> dict[str, dict[str, float]]:
    real_labels, labels = np.asarray(real_labels).astype(str), np.asarray(labels).astype(str)
    out = {}
    for label in np.intersect1d(real_labels, labels):
        ours, theirs = cells[labels == label], real[real_labels == label]
        if min(ours.shape[0], theirs.shape[0]) < MIN_TYPE_CELLS:
            continue
        a, b = _cell_stats(ours, modality), _cell_stats(theirs, modality)
        out[label] = {
            f"{key}_ratio": float(np.median(a[key]) / np.median(b[key]))
            if np.median(b[key])
            else float("nan")
            for key in ("library_size", "detected")
        }
    return out
