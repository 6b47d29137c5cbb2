"""Headline reconstruction scores of observed and predicted profiles of the same cells."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from ._translation import auroc_per_feature, pearson_per_feature


def log_cp10k(x: Any) -> Any:
    """Return ``log1p(counts per 10,000)`` of a cells x features matrix; sparse stays sparse."""
    if sparse.issparse(x):
        x = x.tocsr().astype(np.float64)
        totals = np.asarray(x.sum(axis=1)).ravel()
        x = sparse.csr_matrix(sparse.diags(1e4 / np.maximum(totals, 1e-12)) @ x)
        x.data = np.log1p(x.data)
        return x
    x = np.asarray(x, dtype=np.float64)
    totals = x.sum(axis=1, keepdims=True)
    return np.log1p(x / np.maximum(totals, 1e-12) * 1e4)


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
