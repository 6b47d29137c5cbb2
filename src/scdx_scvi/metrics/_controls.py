"""Simple translation controls that any cross-modality translation method should beat.

The controls predict a target modality of query cells from training cells that have both
modalities, on the scale of the translation metrics: values per 10,000 counts for RNA and
protein, and binary accessibility (whose average is an accessibility probability) for ATAC.

* :func:`mean_profile_prediction` predicts the average training profile for every cell. It
  ignores the source, so it is the level reached by knowing the target's typical profile alone.
* :func:`knn_prediction` averages the targets of the ``k`` training cells whose source profiles
  are closest to the query's, in the source's :class:`~scdx_scvi.metrics.Embedding` (PCA of
  ``log1p`` counts per 10k, LSI for ATAC).
* :func:`ridge_prediction` is a linear model: a ridge regression of the target on that same
  embedding of the source.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from ._embedding import Embedding, binarised, check_modality


def _normalised_target(x: Any, target: str) -> sparse.csr_matrix:
    """Targets on the prediction scale: counts per 10k, or binary accessibility for ATAC."""
    if target == "atac":
        return binarised(x)
    x = sparse.csr_matrix(x, dtype=np.float64)
    totals = np.asarray(x.sum(axis=1)).ravel()
    return sparse.csr_matrix(sparse.diags(1e4 / np.maximum(totals, 1e-12)) @ x)


def _check_inputs(
    train_source: Any, train_target: Any, query_source: Any, source: str, target: str
) -> None:
    check_modality(source, "source")
    check_modality(target, "target")
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


def _source_embedding(
    train_x: Any, query_x: Any, source: str, n_comps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Embed both sets in the source's :class:`Embedding` fitted on the training cells."""
    if train_x.shape[1] < 2:
        raise ValueError(f"The source needs at least two features, got {train_x.shape[1]}.")
    embedding = Embedding(source, n_comps=n_comps).fit(train_x)
    return embedding.transform(train_x), embedding.transform(query_x)


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
    check_modality(modality)
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

    The source profiles are embedded with a :class:`~scdx_scvi.metrics.Embedding` of ``n_comps``
    components (fewer if the source has fewer features) fitted on the training cells: a PCA of
    ``log1p`` counts per 10,000 for ``"rna"`` and ``"protein"``, LSI (TF-IDF and truncated SVD)
    for ``"atac"``. Each query cell is placed in that space, its ``k`` nearest training cells
    (Euclidean) are found, and the prediction is the plain average of their targets on the
    prediction scale: counts per 10,000 for RNA and protein, binary accessibility for ATAC (so
    the average is the share of neighbours where a peak is open).

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
        Number of components of the source embedding.

    Returns
    -------
    Query cells x target features array (float64).

    Examples
    --------
    >>> atac = knn_prediction(train["rna"].X, train["atac"].X, test["rna"].X, "rna", "atac")
    """
    _check_inputs(train_source, train_target, query_source, source, target)
    n_train = train_source.shape[0]
    if not 1 <= k <= n_train:
        raise ValueError(f"`k` must be between 1 and the {n_train} training cells, got {k}.")
    train_emb, query_emb = _source_embedding(train_source, query_source, source, n_comps)
    return knn_on_embedding(train_emb, train_target, query_emb, target, k)


def knn_on_embedding(
    train_emb: np.ndarray, train_target: Any, query_emb: np.ndarray, target: str, k: int = 15
) -> np.ndarray:
    """Predict by the kNN regression of :func:`knn_prediction` in a given source embedding.

    ``train_emb`` and ``query_emb`` are the training and query cells in one space (e.g. a
    model's latent); the prediction is on the scale of :func:`knn_prediction`.
    """
    _, idx = NearestNeighbors(n_neighbors=k).fit(train_emb).kneighbors(query_emb)
    rows = np.repeat(np.arange(len(idx)), k)
    weights = sparse.csr_matrix(
        (np.full(rows.size, 1 / k), (rows, idx.ravel())), shape=(len(idx), len(train_emb))
    )
    return np.asarray((weights @ _normalised_target(train_target, target)).todense())


def ridge_prediction(
    train_source: Any,
    train_target: Any,
    query_source: Any,
    source: str,
    target: str,
    alpha: float = 1.0,
    n_comps: int = 50,
) -> np.ndarray:
    """Predict the target modality of query cells by ridge regression on the source embedding.

    The source is embedded as in :func:`knn_prediction` (PCA of ``log1p`` counts per 10,000, LSI
    for ATAC, fitted on the training cells). The target is regressed on the centred embedding
    with an L2 penalty ``alpha``: ``W = (Z'Z + alpha I)^-1 Z'Y``, the solution of
    :class:`sklearn.linear_model.Ridge`, solved here in closed form so that a sparse target of
    many peaks is never densified for training. The regression runs on ``log1p`` counts per
    10,000 for RNA and protein (predictions are mapped back with ``expm1`` and clipped at 0, so
    they are values per 10k counts) and on binary accessibility for ATAC (predictions clipped to
    ``[0, 1]``). This is the "linear model" control of the openproblems modality-prediction
    task.

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
    alpha
        Ridge penalty (non-negative).
    n_comps
        Number of components of the source embedding.

    Returns
    -------
    Query cells x target features array (float64).

    Examples
    --------
    >>> rna = ridge_prediction(train["atac"].X, train["rna"].X, test["atac"].X, "atac", "rna")
    """
    _check_inputs(train_source, train_target, query_source, source, target)
    if not alpha >= 0:
        raise ValueError(f"`alpha` must be non-negative, got {alpha}.")
    train_emb, query_emb = _source_embedding(train_source, query_source, source, n_comps)
    return ridge_on_embedding(train_emb, train_target, query_emb, target, alpha)


def ridge_on_embedding(
    train_emb: np.ndarray, train_target: Any, query_emb: np.ndarray, target: str, alpha: float = 1.0
) -> np.ndarray:
    """Predict by the ridge regression of :func:`ridge_prediction` in a given source embedding.

    ``train_emb`` and ``query_emb`` are the training and query cells in one space (e.g. a
    model's latent); the prediction is on the scale of :func:`ridge_prediction`.
    """
    train_emb = np.asarray(train_emb, dtype=np.float64)
    query_emb = np.asarray(query_emb, dtype=np.float64)
    y = _normalised_target(train_target, target)
    if target != "atac":
        y.data = np.log1p(y.data)
    z_mean = train_emb.mean(axis=0)
    z = train_emb - z_mean
    y_mean = np.asarray(y.mean(axis=0)).ravel()
    # Z'Y equals Z'(Y - mean) because the columns of the centred Z sum to 0.
    weights = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), np.asarray((y.T @ z).T))
    predicted = (query_emb - z_mean) @ weights + y_mean
    if target == "atac":
        return np.clip(predicted, 0.0, 1.0)
    return np.expm1(np.maximum(predicted, 0.0))
