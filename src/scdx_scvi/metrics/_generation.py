"""Unpaired generation metrics: how close a set of generated cells is to a set of real cells.

The distribution distances (:func:`mmd_rbf`, :func:`energy_distance`), the real-vs-generated
classifier (:func:`classifier_auc`) and the neighbourhood mixing (:func:`mixing_score`) work on
low-dimensional coordinates. :func:`generation_scores` runs them all under one protocol that
treats the two compared sets alike: equal set sizes (the larger set is subsampled), one
embedding fitted on both sets pooled (:func:`~scdx_scvi.metrics.joint_embedding`), and a
classifier scored only on cells it did not see (stratified k-fold cross-validation), over several
seeds. Two samples of one distribution then score AUC 0.5 and MMD about 0, whichever set is
called "real". The pairwise work is done block by block, so memory stays bounded for tens of
thousands of cells.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import hypergeom
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
from sklearn.neighbors import NearestNeighbors

from ._embedding import joint_embedding
from ._reconstruction import log_cp10k
from ._translation import _as_matrix

#: Leading components of an embedding whose spread :func:`spread_ratio` compares by default.
SPREAD_AXES = 5

#: Default bandwidth multipliers of :func:`mmd_rbf`.
DEFAULT_MMD_SCALES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)


def _check_unpaired(real: Any, generated: Any) -> tuple[Any, Any]:
    real, generated = _as_matrix(real), _as_matrix(generated)
    if real.ndim != 2 or generated.ndim != 2:
        raise ValueError(
            f"Expected two cells x features matrices, got {real.ndim}-D and {generated.ndim}-D."
        )
    if real.shape[1] != generated.shape[1]:
        raise ValueError(
            f"Feature dimensions differ: {real.shape[1]} (real) vs {generated.shape[1]} "
            "(generated)."
        )
    if real.shape[0] == 0 or generated.shape[0] == 0:
        raise ValueError("Both sets need at least one cell.")
    return real, generated


def _dense_pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate, densify, and centre both sets on their pooled mean (distances unchanged)."""
    x, y = _check_unpaired(x, y)
    x = np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64)
    y = np.asarray(y.toarray() if sparse.issparse(y) else y, dtype=np.float64)
    center = np.concatenate([x, y]).mean(axis=0)
    return x - center, y - center


def pca_projection(
    real: Any,
    generated: Any,
    n_comps: int = 50,
    log_normalize: bool = True,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Principal components fitted on the real cells only, with both sets projected onto them.

    If ``log_normalize``, both matrices are first transformed to ``log1p(counts per 10,000)``
    (each cell scaled to a total of 10,000). A :class:`sklearn.decomposition.PCA` is fitted on
    the real cells (centred on the real mean; sparse input is centred implicitly with the
    ARPACK solver, never densified) and both sets are projected with the real loadings, so the
    space does not depend on the generator being scored.

    Parameters
    ----------
    real
        Cells x features real cells, dense or sparse (or AnnData, whose ``X`` is used).
    generated
        Cells x features generated cells with the same features.
    n_comps
        Number of components, reduced to ``min(n_real, n_features) - 1`` if larger.
    log_normalize
        Apply ``log1p`` CP10k first (use for counts; disable for already normalised data).
    random_state
        Seed of the PCA solver.

    Returns
    -------
    ``(real_pcs, generated_pcs)``: cells x ``n_comps`` arrays.
    """
    real, generated = _check_unpaired(real, generated)
    if log_normalize:
        real = log_cp10k(real)
        generated = log_cp10k(generated)
    n_comps = int(min(n_comps, min(real.shape) - 1))
    if n_comps < 1:
        raise ValueError(f"Cannot fit a PCA on real data of shape {real.shape}.")
    solver = "arpack" if sparse.issparse(real) else "auto"
    pca = PCA(n_components=n_comps, svd_solver=solver, random_state=random_state)
    real_pcs = pca.fit_transform(real)
    generated_pcs = pca.transform(generated)
    return np.asarray(real_pcs), np.asarray(generated_pcs)


def _pair_blocks(
    a: np.ndarray, b: np.ndarray, chunk_size: int, symmetric: bool
) -> Iterator[tuple[np.ndarray, float]]:
    """Yield ``(squared distance block, weight)`` covering all pairs of rows of ``a`` and ``b``.

    With ``symmetric`` (``a is b``), only blocks on or above the diagonal are built and the
    off-diagonal ones carry weight 2; diagonal entries of diagonal blocks are set to exactly 0.
    """
    a_sq = (a * a).sum(axis=1)
    b_sq = a_sq if symmetric else (b * b).sum(axis=1)
    for i in range(0, a.shape[0], chunk_size):
        a_block = a[i : i + chunk_size]
        j_start = i if symmetric else 0
        for j in range(j_start, b.shape[0], chunk_size):
            b_block = b[j : j + chunk_size]
            d = a_sq[i : i + chunk_size, None] + b_sq[None, j : j + chunk_size]
            d -= 2.0 * (a_block @ b_block.T)
            np.maximum(d, 0.0, out=d)
            if symmetric and i == j:
                np.fill_diagonal(d, 0.0)
            yield d, (2.0 if symmetric and j != i else 1.0)


def _mean_pairwise_sq_distance(z: np.ndarray) -> float:
    """Exact mean of ``||z_i - z_j||²`` over pairs ``i != j``: ``2 Σ_i ||z_i - z̄||² / (n - 1)``."""
    centred = z - z.mean(axis=0)
    return float(2.0 * np.einsum("ij,ij->", centred, centred) / (z.shape[0] - 1))


def _median_pairwise_sq_distance(z: np.ndarray, max_points: int, random_state: int) -> float:
    if z.shape[0] > max_points:
        rng = np.random.default_rng(random_state)
        z = z[rng.choice(z.shape[0], size=max_points, replace=False)]
    sq = (z * z).sum(axis=1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0)
    return float(np.median(d[np.triu_indices(z.shape[0], k=1)]))


def mmd_rbf(
    x: Any,
    y: Any,
    scales: Sequence[float] = DEFAULT_MMD_SCALES,
    bandwidth: str | float = "mean",
    chunk_size: int = 2048,
    median_max_points: int = 2000,
    random_state: int = 0,
) -> float:
    """Squared maximum mean discrepancy with a multi-scale Gaussian (RBF) kernel.

    Biased (V-statistic) estimator ``MMD² = mean(K_xx) + mean(K_yy) - 2 mean(K_xy)``, where the
    means run over all pairs including ``i = j`` and the kernel averages Gaussians over the
    bandwidth multipliers ``scales``:

    ``k(a, b) = (1 / S) Σ_s exp(-||a - b||² / (s · h))``.

    The base bandwidth ``h`` is, by default (``bandwidth="mean"``), the exact mean squared
    Euclidean distance between distinct points of the pooled sample ``x ∪ y``
    (``2 Σ_i ||z_i - z̄||² / (n - 1)``, no pairwise matrix needed); ``"median"`` uses the median
    pairwise squared distance instead (on at most ``median_max_points`` random pooled points); a
    number fixes ``h``, which makes values comparable across generators scored on the same real
    set. With the default scales ``{1/4, 1/2, 1, 2, 4}`` and ``bandwidth="mean"``, the kernel is
    the one of scDiffusion-X's ``mmd_rbf`` divided by 5 (it sums the five Gaussians), so
    ``5 x`` this value is that flavour. As the kernel is at most 1, ``0 <= MMD² <= 2``. Kernel
    sums are accumulated over ``chunk_size x chunk_size`` blocks (symmetric blocks once), so
    memory is ``O(chunk_size²)``; set sizes may differ.

    Parameters
    ----------
    x, y
        Cells x dimensions samples (e.g. real and generated PCs); sparse input is densified.
    scales
        Bandwidth multipliers ``s``.
    bandwidth
        ``"mean"``, ``"median"`` or a positive base bandwidth ``h`` (squared-distance units).
    chunk_size
        Rows per block of the pairwise computations.
    median_max_points
        Pooled points used for the median (exact if the pooled sample is not larger).
    random_state
        Seed of the subsample for the median.

    Returns
    -------
    The MMD² estimate.
    """
    x, y = _dense_pair(x, y)
    pooled = np.concatenate([x, y])
    if isinstance(bandwidth, str):
        if pooled.shape[0] < 2:
            raise ValueError("A data-driven bandwidth needs at least two pooled cells.")
        if bandwidth == "mean":
            h = _mean_pairwise_sq_distance(pooled)
        elif bandwidth == "median":
            h = _median_pairwise_sq_distance(pooled, median_max_points, random_state)
        else:
            raise ValueError(f"bandwidth must be 'mean', 'median' or a number, got {bandwidth!r}.")
    else:
        h = float(bandwidth)
    if len(scales) == 0 or min(float(s) for s in scales) <= 0:
        raise ValueError("scales must be a non-empty sequence of positive numbers.")
    if not h > 0:
        # All points coincide: every kernel value is 1 and the MMD is 0.
        return 0.0
    # Widest bandwidth first: when a scale is exactly half the previous one, its kernel is the
    # square of the previous kernel, which is much cheaper than another exponential.
    ordered = sorted((float(s) for s in scales), reverse=True)

    def kernel_mean(a: np.ndarray, b: np.ndarray, symmetric: bool) -> float:
        total = 0.0
        for d, weight in _pair_blocks(a, b, chunk_size, symmetric):
            block_total = 0.0
            kernel = None
            for i, s in enumerate(ordered):
                if kernel is not None and ordered[i - 1] == 2.0 * s:
                    np.multiply(kernel, kernel, out=kernel)
                else:
                    kernel = np.exp(d * (-1.0 / (s * h)))
                block_total += float(kernel.sum())
            total += weight * block_total
        return total / (len(ordered) * a.shape[0] * b.shape[0])

    return float(kernel_mean(x, x, True) + kernel_mean(y, y, True) - 2 * kernel_mean(x, y, False))


def energy_distance(x: Any, y: Any, chunk_size: int = 2048) -> float:
    """Energy distance between two samples (V-statistic, not square-rooted).

    ``E = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'||`` with Euclidean norms, where each expectation
    is the mean over all pairs of the two samples (pairs ``i = i`` included, contributing 0):
    ``E = 2/(n m) Σ_ij ||x_i - y_j|| - 1/n² Σ_ij ||x_i - x_j|| - 1/m² Σ_ij ||y_i - y_j||``.
    It is 0 for identical samples and non-negative. Distance sums are accumulated over
    ``chunk_size x chunk_size`` blocks, so memory is ``O(chunk_size²)``; set sizes may differ.

    Parameters
    ----------
    x, y
        Cells x dimensions samples (e.g. real and generated PCs); sparse input is densified.
    chunk_size
        Rows per block of the pairwise computations.

    Returns
    -------
    The energy distance.
    """
    x, y = _dense_pair(x, y)

    def distance_mean(a: np.ndarray, b: np.ndarray, symmetric: bool) -> float:
        total = 0.0
        for d, weight in _pair_blocks(a, b, chunk_size, symmetric):
            total += weight * float(np.sqrt(d).sum())
        return total / (a.shape[0] * b.shape[0])

    return float(
        2 * distance_mean(x, y, False) - distance_mean(x, x, True) - distance_mean(y, y, True)
    )


def _check_pairs(real: Any, generated: Any, paired: bool) -> None:
    if paired and real.shape[0] != generated.shape[0]:
        raise ValueError(
            f"Paired sets need as many cells each, got {real.shape[0]} and {generated.shape[0]}."
        )


def classifier_auc(
    real: Any,
    generated: Any,
    seeds: Sequence[int] = (0, 1, 2),
    n_estimators: int = 100,
    max_depth: int | None = 5,
    n_folds: int = 5,
    n_jobs: int | None = None,
    paired: bool = False,
) -> dict[str, Any]:
    """Cross-validated ROC-AUC of a random forest that tells real from generated cells.

    For each seed: the pooled cells are cut into ``n_folds`` stratified folds
    (:class:`sklearn.model_selection.StratifiedKFold`, shuffled with ``random_state=seed``); a
    :class:`sklearn.ensemble.RandomForestClassifier` (``n_estimators`` trees, ``max_depth``,
    ``class_weight="balanced"``, ``random_state=seed``) is trained on all folds but one to predict
    "generated" and scored (ROC-AUC) on the fold it did not see; the seed's AUC is the mean over
    folds. Every cell is thus scored once per seed, by a forest that never saw it. 0.5 means the
    sets cannot be told apart (ideal); 1 that every generated cell is recognisable.
    scDiffusion-X scores one 75/25 split of 1,000 trees; the folds use every cell and the seeds
    show the spread.

    Parameters
    ----------
    real, generated
        Cells x dimensions samples (e.g. the two sets in one embedding), dense or sparse.
    seeds
        One fold assignment and forest per seed.
    n_estimators
        Trees per forest.
    max_depth
        Maximum tree depth.
    n_folds
        Folds of the cross-validation (at most the size of the smaller set).
    n_jobs
        Parallel jobs of the forest.
    paired
        Row ``i`` of ``generated`` is drawn from row ``i`` of ``real`` (e.g. reconstructions or
        posterior samples of the same cells): each pair is kept in one fold
        (:class:`sklearn.model_selection.StratifiedGroupKFold`). Split across folds, a cell
        would teach the forest the label of its twin the wrong way round and push the AUC
        below 0.5.

    Returns
    -------
    ``auc`` (mean over seeds), ``auc_std`` (standard deviation over seeds) and
    ``auc_per_seed`` (list).
    """
    real, generated = _check_unpaired(real, generated)
    _check_pairs(real, generated, paired)
    if not seeds:
        raise ValueError("seeds must not be empty.")
    if not 2 <= n_folds <= min(real.shape[0], generated.shape[0]):
        raise ValueError(
            f"n_folds must be between 2 and the size of the smaller set "
            f"({min(real.shape[0], generated.shape[0])}), got {n_folds}."
        )
    stack = sparse.vstack if sparse.issparse(real) or sparse.issparse(generated) else np.vstack
    features = stack([real, generated])
    if sparse.issparse(features):
        features = features.tocsr()
    labels = np.r_[np.zeros(real.shape[0], dtype=int), np.ones(generated.shape[0], dtype=int)]
    # paired: each cell and its draw form one group, kept in one fold
    groups = np.tile(np.arange(real.shape[0]), 2) if paired else None
    fold_kind = StratifiedGroupKFold if paired else StratifiedKFold
    aucs = []
    for seed in seeds:
        forest = RandomForestClassifier(
            n_estimators=n_estimators,
            max_depth=max_depth,
            class_weight="balanced",
            random_state=seed,
            n_jobs=n_jobs,
        )
        folds = fold_kind(n_splits=n_folds, shuffle=True, random_state=seed)
        scores = cross_val_score(
            forest, features, labels, groups=groups, cv=folds, scoring="roc_auc"
        )
        aucs.append(float(scores.mean()))
    return {"auc": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "auc_per_seed": aucs}


def _simpson_mixing(
    n_generated_neighbours: np.ndarray, k: int, w_real: float, w_gen: float
) -> np.ndarray:
    """Rescaled inverse Simpson index ``1 / (q² + (1 - q)²) - 1`` of size-weighted proportions."""
    gen = n_generated_neighbours * w_gen
    real = (k - n_generated_neighbours) * w_real
    q = gen / (gen + real)
    return 1.0 / (q**2 + (1.0 - q) ** 2) - 1.0


def mixing_score(real: Any, generated: Any, k: int = 15, normalize: bool = True) -> float:
    """Neighbourhood mixing of real and generated cells, from 0 (separated) to 1 (mixed).

    An iLISI-like score on the pooled sample. For each cell ``i``, let ``c_i`` be the number of
    generated cells among its ``k`` nearest neighbours (Euclidean, the cell itself excluded).
    The label proportions are reweighted by the inverse set sizes so that unequal set sizes
    do not count as poor mixing: ``q_i = (c_i / n_gen) / (c_i / n_gen + (k - c_i) / n_real)``.
    The inverse Simpson index ``1 / (q_i² + (1 - q_i)²)`` lies in ``[1, 2]``; rescaled,
    ``s_i = 1 / (q_i² + (1 - q_i)²) - 1`` lies in ``[0, 1]``, and the raw score is
    ``mean_i s_i``.

    Even a perfectly mixed sample has random neighbour counts, so the raw score of two samples
    from one distribution is below 1 (about 0.88 for ``k = 15`` and equal sizes). With
    ``normalize`` (default), the raw score is divided by its expectation under random labels,
    ``E[s_i]`` with ``c_i`` hypergeometric (``k`` draws from the ``n - 1`` other cells), and
    clipped at 1: samples from one distribution give about 1, separated samples 0.

    Parameters
    ----------
    real, generated
        Cells x dimensions samples (e.g. real and generated PCs), dense or sparse.
    k
        Number of neighbours.
    normalize
        Divide by the expectation under random labels (see above).

    Returns
    -------
    The mixing score in ``[0, 1]``.
    """
    real, generated = _check_unpaired(real, generated)
    n_real, n_gen = real.shape[0], generated.shape[0]
    n = n_real + n_gen
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and {n - 1} (the pooled cells minus one).")
    stack = sparse.vstack if sparse.issparse(real) or sparse.issparse(generated) else np.vstack
    pooled = stack([real, generated])
    is_gen = np.r_[np.zeros(n_real, dtype=bool), np.ones(n_gen, dtype=bool)]
    neighbours = NearestNeighbors(n_neighbors=k).fit(pooled).kneighbors(return_distance=False)
    counts = is_gen[neighbours].sum(axis=1)
    w_real, w_gen = 1.0 / n_real, 1.0 / n_gen
    raw = float(_simpson_mixing(counts, k, w_real, w_gen).mean())
    if not normalize:
        return raw
    c = np.arange(k + 1)
    scores = _simpson_mixing(c, k, w_real, w_gen)
    # Random labels: the k neighbours are drawn from the n - 1 other cells.
    expected_real = float((hypergeom.pmf(c, n - 1, n_gen, k) * scores).sum())
    expected_gen = float((hypergeom.pmf(c, n - 1, n_gen - 1, k) * scores).sum())
    expected = (n_real * expected_real + n_gen * expected_gen) / n
    if expected <= 0:
        return 0.0
    return float(min(raw / expected, 1.0))


def per_group(
    metric_fn: Callable[..., Any],
    real: Any,
    generated: Any,
    real_groups: Any,
    generated_groups: Any,
    min_cells: int = 20,
    **kwargs: Any,
) -> pd.DataFrame:
    """Apply a metric separately within each group (e.g. cell type).

    For each group present in either set, ``metric_fn(real[real_groups == g],
    generated[generated_groups == g], **kwargs)`` is evaluated if both subsets have at least
    ``min_cells`` cells; otherwise the group's metric columns are NaN. A scalar result goes to
    a column named after the function; a dict result gives one column per key.

    Parameters
    ----------
    metric_fn
        Any metric of this module (or of the paired translation metrics, with equal groups).
    real, generated
        Cells x features or cells x dimensions, dense or sparse (or AnnData).
    real_groups, generated_groups
        Group label of each real and each generated cell.
    min_cells
        Minimum number of cells in both sets for a group to be scored.
    **kwargs
        Passed to ``metric_fn``.

    Returns
    -------
    One row per group (sorted), with ``group``, ``n_real``, ``n_generated``, ``scored`` and the
    metric column(s).
    """
    real, generated = _check_unpaired(real, generated)
    real_groups = np.asarray(real_groups)
    generated_groups = np.asarray(generated_groups)
    if real_groups.shape[0] != real.shape[0]:
        raise ValueError(
            f"real_groups has {real_groups.shape[0]} entries for {real.shape[0]} real cells."
        )
    if generated_groups.shape[0] != generated.shape[0]:
        raise ValueError(
            f"generated_groups has {generated_groups.shape[0]} entries for "
            f"{generated.shape[0]} generated cells."
        )
    if sparse.issparse(real):
        real = real.tocsr()
    if sparse.issparse(generated):
        generated = generated.tocsr()
    groups = pd.unique(np.concatenate([real_groups, generated_groups]))
    try:
        groups = sorted(groups)
    except TypeError:
        groups = list(groups)
    name = getattr(metric_fn, "__name__", "value")
    rows = []
    for group in groups:
        in_real = real_groups == group
        in_gen = generated_groups == group
        row: dict[str, Any] = {
            "group": group,
            "n_real": int(in_real.sum()),
            "n_generated": int(in_gen.sum()),
        }
        row["scored"] = row["n_real"] >= min_cells and row["n_generated"] >= min_cells
        if row["scored"]:
            result = metric_fn(real[in_real], generated[in_gen], **kwargs)
            row.update(result if isinstance(result, dict) else {name: result})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if name not in frame.columns and not frame["scored"].any():
        frame[name] = np.nan
    return frame


def spread_ratio(real: Any, generated: Any, n_axes: int = SPREAD_AXES) -> float:
    """Spread of ``generated`` along the first ``n_axes`` axes of an embedding, over ``real``'s.

    The sum over the first ``n_axes`` columns (the main axes of variation of a joint embedding,
    such as :func:`joint_embedding`) of the variance of the generated cells, divided by the same
    sum for the real cells. 1 is ideal; below 1 the generated cells are blurred (they vary less
    than real cells along the axes that separate cell states, e.g. a decoder that averages
    cells), above 1 they vary more.

    Parameters
    ----------
    real, generated
        Cells x dimensions samples in one embedding whose columns are ordered by variance.
    n_axes
        Leading columns compared (all if fewer).

    Returns
    -------
    The ratio of summed variances; ``nan`` if the real cells do not vary along those axes.
    """
    real, generated = _check_unpaired(real, generated)
    if n_axes < 1:
        raise ValueError(f"n_axes must be at least 1, got {n_axes}.")
    real, generated = (
        np.asarray(x[:, :n_axes].toarray() if sparse.issparse(x) else x[:, :n_axes], np.float64)
        for x in (real, generated)
    )
    spread = real.var(axis=0).sum()
    if spread == 0:
        return float("nan")
    return float(generated.var(axis=0).sum() / spread)


def generation_scores(
    real: Any,
    generated: Any,
    modality: str = "rna",
    n_comps: int = 50,
    k: int = 15,
    seeds: Sequence[int] = (0, 1, 2),
    n_estimators: int = 100,
    max_cells: int | None = None,
    n_jobs: int | None = None,
    paired: bool = False,
) -> dict[str, float]:
    """Headline generation metrics, with both sets treated alike.

    For each seed: both sets are subsampled (uniformly, without replacement, with that seed) to
    the same size ``n = min(n_real, n_generated, max_cells)``; both are embedded together by
    :func:`~scdx_scvi.metrics.joint_embedding` (a PCA of ``log1p`` counts per 10,000 for RNA and
    protein, LSI for ATAC, fitted on the pooled ``2 n`` cells); and :func:`mmd_rbf` (default
    scales and mean bandwidth), :func:`energy_distance`, :func:`mixing_score`, the
    cross-validated :func:`classifier_auc` (one fold assignment from the seed) and
    :func:`spread_ratio` (the first five components) are computed on that embedding. Each
    metric is the mean over seeds. Because neither set defines the space or outnumbers the
    other, two samples of one distribution score AUC 0.5 and MMD about 0 whichever is called
    "real": score two real samples the same way to read the floor of a data set.

    Parameters
    ----------
    real, generated
        Cells x features raw counts of the real and the generated cells, same features, dense or
        sparse (or AnnData).
    modality
        ``"rna"``, ``"protein"`` or ``"atac"``: which embedding.
    n_comps
        Components of the embedding.
    k
        Neighbours of the mixing score.
    seeds
        One subsample, embedding and fold assignment per seed.
    n_estimators
        Trees of the classifier.
    max_cells
        If given, at most this many cells per set, bounding the cost of the quadratic metrics.
    n_jobs
        Parallel jobs of the random forests.
    paired
        Row ``i`` of ``generated`` is drawn from row ``i`` of ``real`` (reconstruction or
        posterior draws of the same cells): both sets are subsampled to the same rows and the
        classifier keeps each pair in one fold (:func:`classifier_auc`).

    Returns
    -------
    ``mmd_rbf``, ``energy_distance``, ``classifier_auc``, ``classifier_auc_std`` (over seeds),
    ``mixing``, ``spread_ratio``, ``n_real`` and ``n_generated`` (the equal sizes scored) and
    ``n_comps``.
    """
    real, generated = _check_unpaired(real, generated)
    if not seeds:
        raise ValueError("seeds must not be empty.")
    _check_pairs(real, generated, paired)
    n = min(real.shape[0], generated.shape[0], max_cells or real.shape[0])
    real = real.tocsr() if sparse.issparse(real) else np.asarray(real)
    generated = generated.tocsr() if sparse.issparse(generated) else np.asarray(generated)
    rows: list[dict[str, float]] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        rows_x = np.sort(rng.choice(real.shape[0], size=n, replace=False))
        if paired:
            rows_y = rows_x
        else:
            rows_y = np.sort(rng.choice(generated.shape[0], size=n, replace=False))
        x, y = joint_embedding(real[rows_x], generated[rows_y], modality, n_comps, seed)
        auc = classifier_auc(
            x, y, seeds=(seed,), n_estimators=n_estimators, n_jobs=n_jobs, paired=paired
        )
        rows.append(
            {
                "mmd_rbf": mmd_rbf(x, y),
                "energy_distance": energy_distance(x, y),
                "classifier_auc": auc["auc"],
                "mixing": mixing_score(x, y, k=min(k, 2 * n - 1)),
                "spread_ratio": spread_ratio(x, y),
                "n_comps": x.shape[1],
            }
        )
    frame = pd.DataFrame(rows)
    return {
        "mmd_rbf": float(frame["mmd_rbf"].mean()),
        "energy_distance": float(frame["energy_distance"].mean()),
        "classifier_auc": float(frame["classifier_auc"].mean()),
        "classifier_auc_std": float(frame["classifier_auc"].std(ddof=0)),
        "mixing": float(frame["mixing"].mean()),
        "spread_ratio": float(frame["spread_ratio"].mean()),
        "n_real": int(n),
        "n_generated": int(n),
        "n_comps": int(frame["n_comps"].iloc[0]),
    }
