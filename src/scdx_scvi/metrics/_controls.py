"""Simple translation controls that any cross-modality translation method should beat.

Both controls predict a target modality of query cells from training cells that have both
modalities, on the scale of the translation metrics: values per 10,000 counts for RNA and
protein, and binary accessibility (whose average is an accessibility probability) for ATAC.

* :func:`mean_profile_prediction` predicts the average training profile for every cell. It
  ignores the source, so it is the level reached by knowing the target's typical profile alone.
* :func:`knn_prediction` averages the targets of the ``k`` training cells whose source profiles
  are closest to the query's, in a truncated SVD of the normalised source.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from sklearn.decomposition import TruncatedSVD
from sklearn.neighbors import NearestNeighbors

from ._reconstruction import log_cp10k

#: Modalities whose values are counts (scaled per 10k); the others (ATAC) are binarised.
_COUNT_MODALITIES = ("rna", "protein")
_MODALITIES = (*_COUNT_MODALITIES, "atac")


def _check_modality(modality: str, what: str) -> None:
    if modality not in _MODALITIES:
        raise ValueError(f"`{what}` must be one of {list(_MODALITIES)}, got {modality!r}.")


def _binarised(x: Any) -> sparse.csr_matrix:
    x = sparse.csr_matrix(x, dtype=np.float64)
    x.data = (x.data > 0).astype(np.float64)
    return x


def _normalised_target(x: Any, target: str) -> sparse.csr_matrix:
    """Targets on the prediction scale: counts per 10k, or binary accessibility for ATAC."""
    if target == "atac":
        return _binarised(x)
    x = sparse.csr_matrix(x, dtype=np.float64)
    totals = np.asarray(x.sum(axis=1)).ravel()
    return sparse.csr_matrix(sparse.diags(1e4 / np.maximum(totals, 1e-12)) @ x)


def _source_embedding(
    train_x: Any, query_x: Any, source: str, n_comps: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Embed both sets in a truncated SVD of the normalised source fitted on the training cells."""

    def prepare(x: Any) -> sparse.csr_matrix:
        return _binarised(x) if source == "atac" else log_cp10k(sparse.csr_matrix(x))

    n_comps = min(n_comps, train_x.shape[1] - 1)
    if n_comps < 1:
        raise ValueError(f"The source needs at least two features, got {train_x.shape[1]}.")
    svd = TruncatedSVD(n_components=n_comps, random_state=0)
    return svd.fit_transform(prepare(train_x)), svd.transform(prepare(query_x))


def mean_profile_prediction(train_target: Any, n_cells: int, modality: str) -> np.ndarray:
    """Predict the mean training profile of the target modality for every query cell.

    Each training cell's target is first put on the prediction scale (counts per 10,000 for
    ``"rna"`` and ``"protein"``, accessibility binarised at > 0 for ``"atac"``), then averaged
    over the training cells. The prediction carries no information about the individual query
    cells: its per-feature correlations are 0 and its per-peak AUROC is 0.5, but its per-cell
    correlations show how much of a profile the typical profile already explains.

    Parameters
    ----------
    train_target
        Training cells x target features, raw counts (dense or sparse).
    n_cells
        Number of query cells to predict.
    modality
        The target modality: ``"rna"``, ``"atac"`` or ``"protein"``.

    Returns
    -------
    ``n_cells`` x features array (float64) whose rows all equal the mean profile.

    Examples
    --------
    >>> import numpy as np
    >>> mean_profile_prediction(np.array([[1, 3], [2, 2]]), 3, "rna")[0]
    array([3750., 6250.])
    """
    _check_modality(modality, "modality")
    if n_cells < 0:
        raise ValueError(f"`n_cells` must be non-negative, got {n_cells}.")
    mean = np.asarray(_normalised_target(train_target, modality).mean(axis=0))
    return np.repeat(mean, n_cells, axis=0)


def knn_prediction(
    train_source: Any,
    train_target: Any,
    query_source: Any,
    source: str,
    target: str,
    k: int = 15,
    n_comps: int = 50,
) -> np.ndarray:
    """Predict the target modality of query cells by k-nearest-neighbour regression.

    The source profiles are normalised (``log1p`` counts per 10,000 for ``"rna"`` and
    ``"protein"``, binarised at > 0 for ``"atac"``) and reduced with a
    :class:`~sklearn.decomposition.TruncatedSVD` of ``n_comps`` components (fewer if the source
    has fewer features) fitted on the training cells. Each query cell is placed in that space,
    its ``k`` nearest training cells (Euclidean) are found, and the prediction is the plain
    average of their targets on the prediction scale: counts per 10,000 for RNA and protein,
    binary accessibility for ATAC (so the average is the share of neighbours where a peak is
    open).

    Parameters
    ----------
    train_source
        Training cells x source features, raw counts (dense or sparse).
    train_target
        The same training cells x target features, raw counts.
    query_source
        Query cells x source features (the training source features, in the same order).
    source
        The source modality: ``"rna"``, ``"atac"`` or ``"protein"``.
    target
        The target modality: ``"rna"``, ``"atac"`` or ``"protein"``.
    k
        Number of neighbours (at most the number of training cells).
    n_comps
        Number of SVD components.

    Returns
    -------
    Query cells x target features array (float64).

    Examples
    --------
    >>> atac = knn_prediction(train["rna"].X, train["atac"].X, test["rna"].X, "rna", "atac")
    """
    _check_modality(source, "source")
    _check_modality(target, "target")
    n_train = train_source.shape[0]
    if train_target.shape[0] != n_train:
        raise ValueError(
            f"train_source has {n_train} cells but train_target has {train_target.shape[0]}."
        )
    if query_source.shape[1] != train_source.shape[1]:
        raise ValueError(
            f"query_source has {query_source.shape[1]} features, train_source "
            f"{train_source.shape[1]}."
        )
    if not 1 <= k <= n_train:
        raise ValueError(f"`k` must be between 1 and the {n_train} training cells, got {k}.")
    train_emb, query_emb = _source_embedding(train_source, query_source, source, n_comps)
    _, idx = NearestNeighbors(n_neighbors=k).fit(train_emb).kneighbors(query_emb)
    rows = np.repeat(np.arange(len(idx)), k)
    weights = sparse.csr_matrix(
        (np.full(rows.size, 1 / k), (rows, idx.ravel())), shape=(len(idx), n_train)
    )
    return np.asarray((weights @ _normalised_target(train_target, target)).todense())
