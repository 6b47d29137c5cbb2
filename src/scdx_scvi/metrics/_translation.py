"""Paired translation metrics: row ``i`` of the truth and of the prediction are the same cell.

The correlation metrics follow the openproblems ``predict_modality`` definitions: per-cell and
per-feature Pearson/Spearman correlations, where rows or columns with zero standard deviation in
either matrix score 0 and values are clipped to ``[-1, 1]``, and overall correlations of the
flattened matrices. Spearman correlation is Pearson correlation on average ranks (ties share the
mean of their ranks). All matrix work is done on blocks of rows or columns, so at most one block
of each input is dense at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy import sparse
from scipy.spatial.distance import cdist
from scipy.stats import rankdata
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    roc_auc_score,
)
from sklearn.neighbors import KNeighborsClassifier

#: Target number of entries per dense block (32 MiB of float64).
_BLOCK_ENTRIES = 2**22


def _as_matrix(x: Any) -> Any:
    """Return ``x.X`` for AnnData-like objects, a sparse matrix as is, else a numpy array."""
    if hasattr(x, "X") and hasattr(x, "obs"):
        x = x.X
    if sparse.issparse(x):
        return x
    return np.asarray(x)


def _check_paired(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    y_true, y_pred = _as_matrix(y_true), _as_matrix(y_pred)
    if y_true.ndim != 2 or y_pred.ndim != 2:
        raise ValueError(
            f"Expected two cells x features matrices, got {y_true.ndim}-D and {y_pred.ndim}-D."
        )
    if y_true.shape != y_pred.shape:
        raise ValueError(f"Shapes differ: {y_true.shape} vs {y_pred.shape}.")
    return y_true, y_pred


def _block_size(chunk_size: int | None, other_dim: int) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
        return int(chunk_size)
    return max(1, _BLOCK_ENTRIES // max(other_dim, 1))


def _dense(block: Any) -> np.ndarray:
    block = block.toarray() if sparse.issparse(block) else np.asarray(block)
    return block.astype(np.float64, copy=False)


def _blocks(x: Any, axis: int, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, dense block)`` over rows (``axis=0``) or columns (``axis=1``)."""
    if sparse.issparse(x):
        x = x.tocsr() if axis == 0 else x.tocsc()
    n = x.shape[axis]
    for start in range(0, n, size):
        block = x[start : start + size] if axis == 0 else x[:, start : start + size]
        yield start, _dense(block)


def _correlation_along(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    """Pearson correlation of matching vectors along ``axis`` (0 where an SD is 0, clipped)."""
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (a * b).sum(axis=axis) / denom, 0.0)
    return np.clip(r, -1.0, 1.0)


def _paired_correlation(
    y_true: Any, y_pred: Any, *, per: str, rank: bool, chunk_size: int | None
) -> np.ndarray:
    y_true, y_pred = _check_paired(y_true, y_pred)
    # Blocks of cells (rows) for per-cell metrics, of features (columns) for per-feature ones;
    # the correlation runs along the other axis, which is also the axis that is ranked.
    block_axis = 0 if per == "cell" else 1
    along = 1 - block_axis
    size = _block_size(chunk_size, y_true.shape[along])
    out = np.zeros(y_true.shape[block_axis])
    pred_blocks = _blocks(y_pred, block_axis, size)
    for start, a in _blocks(y_true, block_axis, size):
        _, b = next(pred_blocks)
        if rank:
            a = rankdata(a, axis=along)
            b = rankdata(b, axis=along)
        out[start : start + a.shape[block_axis]] = _correlation_along(a, b, along)
    return out


def pearson_per_cell(y_true: Any, y_pred: Any, chunk_size: int | None = None) -> np.ndarray:
    """Pearson correlation of each cell's profile between truth and prediction.

    For cell ``i``, ``r_i = corr(Y[i, :], Ŷ[i, :])`` across features (openproblems
    ``mean_pearson_per_cell`` is the mean of these values). Cells with zero standard deviation in
    either matrix get 0; values are clipped to ``[-1, 1]``.

    Parameters
    ----------
    y_true, y_pred
        Cells x features, dense or sparse (or AnnData, whose ``X`` is used), same shape and cell
        order.
    chunk_size
        Cells per dense block; by default about 4 million entries per block.

    Returns
    -------
    One correlation per cell.
    """
    return _paired_correlation(y_true, y_pred, per="cell", rank=False, chunk_size=chunk_size)


def spearman_per_cell(y_true: Any, y_pred: Any, chunk_size: int | None = None) -> np.ndarray:
    """Spearman correlation of each cell's profile between truth and prediction.

    Pearson correlation of the average ranks (ties get the mean of their ranks) of ``Y[i, :]``
    and ``Ŷ[i, :]`` across features. Cells with a constant profile in either matrix get 0; values
    are clipped to ``[-1, 1]``.

    Parameters
    ----------
    y_true, y_pred
        Cells x features, dense or sparse (or AnnData), same shape and cell order.
    chunk_size
        Cells per dense block; by default about 4 million entries per block.

    Returns
    -------
    One correlation per cell.
    """
    return _paired_correlation(y_true, y_pred, per="cell", rank=True, chunk_size=chunk_size)


def pearson_per_feature(y_true: Any, y_pred: Any, chunk_size: int | None = None) -> np.ndarray:
    """Pearson correlation of each feature between truth and prediction.

    For feature ``j``, ``r_j = corr(Y[:, j], Ŷ[:, j])`` across cells (openproblems
    ``mean_pearson_per_gene`` is the mean of these values). Features with zero standard deviation
    in either matrix get 0; values are clipped to ``[-1, 1]``.

    Parameters
    ----------
    y_true, y_pred
        Cells x features, dense or sparse (or AnnData), same shape and cell order.
    chunk_size
        Features per dense block; by default about 4 million entries per block.

    Returns
    -------
    One correlation per feature.
    """
    return _paired_correlation(y_true, y_pred, per="feature", rank=False, chunk_size=chunk_size)


def auroc_per_feature(y_true: Any, y_score: Any, chunk_size: int | None = None) -> np.ndarray:
    """Area under the ROC curve of each feature, scoring binarised truth (``> 0``).

    Computed with the rank-sum (Mann-Whitney) identity, ties counted as one half, as
    :func:`sklearn.metrics.roc_auc_score` does. Features whose truth has one class get NaN.

    Parameters
    ----------
    y_true
        Cells x features observations (binarised at > 0), dense or sparse.
    y_score
        Cells x features predicted probabilities or scores.
    chunk_size
        Features per dense block; by default about 4 million entries per block.

    Returns
    -------
    One AUROC per feature (NaN where undefined).
    """
    y_true, y_score = _check_paired(y_true, y_score)
    size = _block_size(chunk_size, y_true.shape[0])
    out = np.full(y_true.shape[1], np.nan)
    score_blocks = _blocks(y_score, 1, size)
    for start, truth in _blocks(y_true, 1, size):
        _, score = next(score_blocks)
        positive = truth > 0
        n_pos = positive.sum(axis=0)
        n_neg = positive.shape[0] - n_pos
        rank_sum = np.where(positive, rankdata(score, axis=0), 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        out[start : start + truth.shape[1]] = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    return out


def spearman_per_feature(y_true: Any, y_pred: Any, chunk_size: int | None = None) -> np.ndarray:
    """Spearman correlation of each feature between truth and prediction.

    Pearson correlation of the average ranks of ``Y[:, j]`` and ``Ŷ[:, j]`` across cells.
    Features that are constant in either matrix get 0; values are clipped to ``[-1, 1]``. See
    :func:`~scdx_scvi.metrics.pearson_per_feature` for the Pearson version.

    Parameters
    ----------
    y_true, y_pred
        Cells x features, dense or sparse (or AnnData), same shape and cell order.
    chunk_size
        Features per dense block; by default about 4 million entries per block.

    Returns
    -------
    One correlation per feature.
    """
    return _paired_correlation(y_true, y_pred, per="feature", rank=True, chunk_size=chunk_size)


def pearson_overall(y_true: Any, y_pred: Any, chunk_size: int | None = None) -> float:
    """Pearson correlation of the flattened (vectorised) truth and prediction matrices.

    Computed in two passes over blocks of cells (means, then centred cross-products), so only one
    block of each matrix is dense at a time. Returns 0 when either matrix is constant.

    Parameters
    ----------
    y_true, y_pred
        Cells x features, dense or sparse (or AnnData), same shape and cell order.
    chunk_size
        Cells per dense block; by default about 4 million entries per block.

    Returns
    -------
    The correlation, clipped to ``[-1, 1]``.
    """
    y_true, y_pred = _check_paired(y_true, y_pred)
    size = _block_size(chunk_size, y_true.shape[1])
    n = y_true.shape[0] * y_true.shape[1]
    if n == 0:
        return 0.0
    mean_a = float(y_true.sum(dtype=np.float64)) / n
    mean_b = float(y_pred.sum(dtype=np.float64)) / n
    saa = sbb = sab = 0.0
    pred_blocks = _blocks(y_pred, 0, size)
    for _, a in _blocks(y_true, 0, size):
        _, b = next(pred_blocks)
        a = a - mean_a
        b = b - mean_b
        saa += float(np.einsum("ij,ij->", a, a))
        sbb += float(np.einsum("ij,ij->", b, b))
        sab += float(np.einsum("ij,ij->", a, b))
    denom = np.sqrt(saa * sbb)
    if denom <= 0:
        return 0.0
    return float(np.clip(sab / denom, -1.0, 1.0))


def _flat_ranks(x: Any) -> Any:
    """Average ranks of all entries of ``x``, shifted by a constant (irrelevant to correlations).

    For a sparse matrix, only the stored non-zero values are ranked: the zeros all tie and share
    one rank ``r0``, so ``ranks - r0`` keeps the sparsity pattern and is returned as a sparse
    matrix. A dense matrix gets a dense array of ranks.
    """
    if not sparse.issparse(x):
        return rankdata(x, axis=None).reshape(x.shape)
    x = x.tocsr(copy=True)
    x.sum_duplicates()
    x.eliminate_zeros()
    values = x.data.astype(np.float64)
    n_total = x.shape[0] * x.shape[1]
    n_zero = n_total - values.size
    n_neg = int((values < 0).sum())
    ranks = rankdata(values)  # ranks among the non-zeros only
    # Positive values rank above every zero; zeros occupy ranks n_neg + 1 .. n_neg + n_zero.
    ranks[values > 0] += n_zero
    zero_rank = n_neg + (n_zero + 1) / 2
    x.data = ranks - zero_rank
    return x


def spearman_overall(y_true: Any, y_pred: Any, chunk_size: int | None = None) -> float:
    """Spearman correlation of the flattened truth and prediction matrices.

    Pearson correlation (:func:`pearson_overall`) of the average ranks of all entries of each
    matrix. Sparse inputs are ranked without densifying them (zeros share one average rank, only
    the non-zeros are sorted); a dense input needs one extra dense array of ranks of its size.

    Parameters
    ----------
    y_true, y_pred
        Cells x features, dense or sparse (or AnnData), same shape and cell order.
    chunk_size
        Cells per dense block in the correlation pass.

    Returns
    -------
    The correlation, clipped to ``[-1, 1]``.
    """
    y_true, y_pred = _check_paired(y_true, y_pred)
    return pearson_overall(_flat_ranks(y_true), _flat_ranks(y_pred), chunk_size=chunk_size)


def rmse(y_true: Any, y_pred: Any, chunk_size: int | None = None) -> float:
    """Root mean squared error over all cells x features entries.

    ``RMSE = sqrt(mean((Y - Ŷ)²))`` over every entry (openproblems ``rmse``).

    Parameters
    ----------
    y_true, y_pred
        Cells x features, dense or sparse (or AnnData), same shape and cell order.
    chunk_size
        Cells per dense block; by default about 4 million entries per block.

    Returns
    -------
    The RMSE.
    """
    y_true, y_pred = _check_paired(y_true, y_pred)
    n = y_true.shape[0] * y_true.shape[1]
    if n == 0:
        raise ValueError("Cannot compute the RMSE of empty matrices.")
    if sparse.issparse(y_true) and sparse.issparse(y_pred):
        diff = (y_true - y_pred).tocsr()
        return float(np.sqrt(diff.multiply(diff).sum() / n))
    size = _block_size(chunk_size, y_true.shape[1])
    total = 0.0
    pred_blocks = _blocks(y_pred, 0, size)
    for _, a in _blocks(y_true, 0, size):
        _, b = next(pred_blocks)
        d = a - b
        total += float(np.einsum("ij,ij->", d, d))
    return float(np.sqrt(total / n))


def auprc_per_feature(y_true: Any, y_score: Any, chunk_size: int | None = None) -> np.ndarray:
    """Average precision of each feature, scoring binarised truth (``> 0``) by prediction.

    Same value as :func:`sklearn.metrics.average_precision_score` on each column (ties in the
    score form one threshold): ``AP = (1 / P) Σ_{i positive} TP(s_i) / N(s_i)``, where ``TP(s)``
    and ``N(s)`` count the positives and all cells with score ``≥ s`` and ``P`` is the number of
    positives. Computed vectorised over blocks of features. Its chance level is the prevalence
    of the feature, so report prevalence next to it. Features whose truth has one class only get
    NaN.

    Parameters
    ----------
    y_true
        Cells x features observations (binarised at > 0), dense or sparse (or AnnData).
    y_score
        Cells x features predicted probabilities or scores.
    chunk_size
        Features per dense block; by default about 4 million entries per block.

    Returns
    -------
    One average precision per feature (NaN where undefined).
    """
    y_true, y_score = _check_paired(y_true, y_score)
    size = _block_size(chunk_size, y_true.shape[0])
    out = np.full(y_true.shape[1], np.nan)
    score_blocks = _blocks(y_score, 1, size)
    for start, truth in _blocks(y_true, 1, size):
        _, score = next(score_blocks)
        positive = truth > 0
        n_pos = positive.sum(axis=0)
        n_cells = positive.shape[0]
        # Cells scoring >= s_i: "max" rank of -s_i among all cells.
        n_at_least = rankdata(-score, method="max", axis=0)
        # Positives scoring >= s_i: same among positives only (negatives pushed to the end).
        tp_at_least = rankdata(np.where(positive, -score, np.inf), method="max", axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(positive, tp_at_least / n_at_least, 0.0)
            ap = precision.sum(axis=0) / n_pos
        valid = (n_pos > 0) & (n_pos < n_cells)
        out[start : start + truth.shape[1]] = np.where(valid, ap, np.nan)
    return out


def auroc_auprc_flat(
    y_true: Any,
    y_score: Any,
    max_entries: int | None = 50_000_000,
    random_state: int = 0,
) -> dict[str, float]:
    """AUROC and AUPRC of all entries at once (flattened matrices), with the prevalence.

    Truth is binarised at ``> 0``; every cell x feature entry is one sample scored by the
    prediction (:func:`sklearn.metrics.roc_auc_score`,
    :func:`sklearn.metrics.average_precision_score`). The AUPRC chance level is the prevalence,
    the share of positive entries, which is returned alongside.

    Parameters
    ----------
    y_true
        Cells x features observations, dense or sparse (or AnnData).
    y_score
        Cells x features predicted probabilities or scores.
    max_entries
        If the matrices hold more entries than this, the metrics are computed on a uniformly
        random subset of cells (rows) holding at most this many entries, so memory stays
        bounded; ``None`` always uses every entry.
    random_state
        Seed of the cell subsample.

    Returns
    -------
    ``auroc``, ``auprc``, ``prevalence`` (positive share of the entries used) and
    ``n_entries`` (entries used). AUROC and AUPRC are NaN if only one class is present.
    """
    y_true, y_score = _check_paired(y_true, y_score)
    n_cells, n_features = y_true.shape
    if max_entries is not None and n_cells * n_features > max_entries:
        n_keep = max(1, max_entries // max(n_features, 1))
        rng = np.random.default_rng(random_state)
        rows = np.sort(rng.choice(n_cells, size=n_keep, replace=False))
        y_true = y_true.tocsr()[rows] if sparse.issparse(y_true) else y_true[rows]
        y_score = y_score.tocsr()[rows] if sparse.issparse(y_score) else y_score[rows]
    truth = _dense(y_true).ravel() > 0
    score = _dense(y_score).ravel()
    n_pos = int(truth.sum())
    out = {
        "auroc": np.nan,
        "auprc": np.nan,
        "prevalence": n_pos / truth.size if truth.size else np.nan,
        "n_entries": int(truth.size),
    }
    if 0 < n_pos < truth.size:
        out["auroc"] = float(roc_auc_score(truth, score))
        out["auprc"] = float(average_precision_score(truth, score))
    return out


def _as_dense_embedding(x: Any, name: str) -> np.ndarray:
    x = _as_matrix(x)
    x = x.toarray() if sparse.issparse(x) else x
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D cells x dimensions array, got {x.ndim}-D.")
    return x


def foscttm(x: Any, y: Any, chunk_size: int | None = None) -> float:
    """Fraction of samples closer than the true match (FOSCTTM), averaged over both directions.

    With Euclidean distances ``d[i, j] = ||x_i - y_j||`` between paired sets (``x_i`` and ``y_i``
    are the same cell), ``f_x[i] = mean_j 1[d[i, j] < d[i, i]]`` and
    ``f_y[j] = mean_i 1[d[i, j] < d[j, j]]``; the result is ``(mean(f_x) + mean(f_y)) / 2``
    (GLUE definition): 0 when every cell's true match is its nearest neighbour, about 0.5 for
    random pairings. Ties are not counted as closer. The distance matrix is built ``chunk_size``
    rows at a time with :func:`scipy.spatial.distance.cdist` (exact per-pair sums, so identical
    rows give identical distances and ties are exact), never as a whole.

    Parameters
    ----------
    x, y
        Cells x dimensions embeddings of the same cells in one space, e.g. translated and true
        profiles in a PCA fitted on real target data. Sparse input is densified.
    chunk_size
        Rows of the distance matrix per block; by default about 4 million distances per block.

    Returns
    -------
    The FOSCTTM.
    """
    x = _as_dense_embedding(x, "x")
    y = _as_dense_embedding(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"Shapes differ: {x.shape} vs {y.shape}.")
    n = x.shape[0]
    if n == 0:
        raise ValueError("FOSCTTM needs at least one cell.")
    size = _block_size(chunk_size, n)
    # Squared distances of the true pairs, from the same routine as the blocks below.
    true_sq = np.concatenate(
        [
            np.diag(cdist(x[start : start + size], y[start : start + size], "sqeuclidean"))
            for start in range(0, n, size)
        ]
    )
    closer_x = np.zeros(n)
    closer_y = np.zeros(n)
    for start in range(0, n, size):
        stop = min(start + size, n)
        d = cdist(x[start:stop], y, "sqeuclidean")
        closer_x[start:stop] = (d < true_sq[start:stop, None]).sum(axis=1)
        closer_y += (d < true_sq[None, :]).sum(axis=0)
    return float((closer_x.mean() + closer_y.mean()) / (2 * n))


def knn_label_transfer_accuracy(
    reference: Any,
    reference_labels: Any,
    query: Any,
    query_labels: Any,
    k: int = 15,
) -> dict[str, float]:
    """Cell-type preservation: a kNN classifier trained on real cells, applied to translated ones.

    A :class:`sklearn.neighbors.KNeighborsClassifier` (``k`` neighbours, uniform weights,
    Euclidean distance) is fitted on the reference cells (real target-modality cells, e.g. in a
    PCA fitted on them) and predicts the labels of the query cells (translated cells, in the
    same space). Accuracy and macro-F1 (:func:`sklearn.metrics.f1_score` with
    ``average="macro"``, unweighted mean over the labels present in the query truth or the
    predictions) are computed against the query's true labels.

    Parameters
    ----------
    reference
        Cells x dimensions of real cells, dense or sparse (or AnnData).
    reference_labels
        Label of each reference cell.
    query
        Cells x dimensions of translated cells, same dimensions as ``reference``.
    query_labels
        True label of each query cell.
    k
        Number of neighbours.

    Returns
    -------
    ``accuracy``, ``macro_f1``, ``n_query`` and ``k``.
    """
    reference, query = _as_matrix(reference), _as_matrix(query)
    reference_labels = np.asarray(reference_labels)
    query_labels = np.asarray(query_labels)
    if reference.ndim != 2 or query.ndim != 2:
        raise ValueError("reference and query must be 2-D cells x dimensions matrices.")
    if reference.shape[1] != query.shape[1]:
        raise ValueError(
            f"Feature dimensions differ: reference has {reference.shape[1]}, "
            f"query has {query.shape[1]}."
        )
    if reference_labels.shape[0] != reference.shape[0]:
        raise ValueError(
            f"reference_labels has {reference_labels.shape[0]} entries for "
            f"{reference.shape[0]} reference cells."
        )
    if query_labels.shape[0] != query.shape[0]:
        raise ValueError(
            f"query_labels has {query_labels.shape[0]} entries for {query.shape[0]} query cells."
        )
    if not 1 <= k <= reference.shape[0]:
        raise ValueError(f"k must be between 1 and the {reference.shape[0]} reference cells.")
    algorithm = "brute" if sparse.issparse(reference) or sparse.issparse(query) else "auto"
    classifier = KNeighborsClassifier(n_neighbors=k, algorithm=algorithm)
    classifier.fit(reference, reference_labels)
    predicted = classifier.predict(query)
    return {
        "accuracy": float(accuracy_score(query_labels, predicted)),
        "macro_f1": float(f1_score(query_labels, predicted, average="macro", zero_division=0)),
        "n_query": int(query.shape[0]),
        "k": int(k),
    }
