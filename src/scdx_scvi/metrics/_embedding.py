"""Low-dimensional embeddings of raw single-cell profiles, one definition per modality kind.

Counts (RNA, protein) are embedded by a PCA of ``log1p(counts per 10,000)``; accessibility
(ATAC) by latent semantic indexing (LSI): binarised, TF-IDF transformed, then a truncated SVD, as
in Signac and muon. The same embedding serves the controls (fitted on training cells, applied to
query cells) and the generation metrics (fitted on the pooled compared sets).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from sklearn.decomposition import PCA, TruncatedSVD

from ._reconstruction import log_cp10k

#: Modality kinds whose values are counts; ``"atac"`` is accessibility.
COUNT_MODALITIES = ("rna", "protein")
MODALITIES = (*COUNT_MODALITIES, "atac")


def check_modality(modality: str, what: str = "modality") -> None:
    """Raise a ``ValueError`` naming ``what`` unless ``modality`` is a known modality kind."""
    if modality not in MODALITIES:
        raise ValueError(f"`{what}` must be one of {list(MODALITIES)}, got {modality!r}.")


def binarised(x: Any, dtype: Any = np.float64) -> sparse.csr_matrix:
    """Return ``x > 0`` as a sparse matrix of 0/1 values (explicit zeros removed)."""
    x = sparse.csr_matrix(x, dtype=dtype)
    x.data = (x.data > 0).astype(dtype)
    x.eliminate_zeros()
    return x


def _accessibility(x: Any) -> sparse.csr_matrix:
    """Clip accessibility at 1: counts become 0/1, probabilities stay as they are."""
    return sparse.csr_matrix(sparse.csr_matrix(x, dtype=np.float64).minimum(1.0))


class Embedding:
    """A PCA (counts) or LSI (ATAC) fitted on some cells, applicable to others.

    Parameters
    ----------
    modality
        ``"rna"``, ``"protein"`` (PCA of ``log1p`` counts per 10,000) or ``"atac"`` (LSI:
        accessibility clipped at 1, so counts are binarised and probabilities kept, TF-IDF
        ``tf = x / total``, ``idf = log(1 + n_cells / (1 + n_open))`` from the fitted cells, then
        a truncated SVD).
    n_comps
        Components, reduced to ``min(n_cells, n_features) - 1`` if larger.
    random_state
        Seed of the solver.

    Examples
    --------
    >>> embedding = Embedding("rna", n_comps=20).fit(train_counts)
    >>> query_pcs = embedding.transform(query_counts)
    """

    def __init__(self, modality: str, n_comps: int = 50, random_state: int = 0) -> None:
        check_modality(modality)
        self.modality, self.n_comps, self.random_state = modality, n_comps, random_state
        self.idf_: np.ndarray | None = None

    def _prepare(self, x: Any) -> Any:
        if self.modality != "atac":
            return log_cp10k(x)
        x = _accessibility(x)
        totals = np.asarray(x.sum(axis=1)).ravel()
        return sparse.csr_matrix(sparse.diags(1.0 / np.maximum(totals, 1.0)) @ x @ self.idf_)

    def fit(self, x: Any) -> Embedding:
        """Fit the embedding on the cells x features matrix ``x`` (raw counts)."""
        x = sparse.csr_matrix(x) if sparse.issparse(x) else np.asarray(x)
        n_comps = int(min(self.n_comps, min(x.shape) - 1))
        if n_comps < 1:
            raise ValueError(f"Cannot embed data of shape {x.shape}: too few cells or features.")
        if self.modality == "atac":
            n_open = np.asarray(_accessibility(x).sum(axis=0)).ravel()
            self.idf_ = sparse.diags(np.log1p(x.shape[0] / (1.0 + n_open)))
            self.model_ = TruncatedSVD(n_components=n_comps, random_state=self.random_state)
        else:
            solver = "arpack" if sparse.issparse(x) else "auto"
            self.model_ = PCA(
                n_components=n_comps, svd_solver=solver, random_state=self.random_state
            )
        self.model_.fit(self._prepare(x))
        return self

    def transform(self, x: Any) -> np.ndarray:
        """Embed the cells x features matrix ``x`` (raw counts, the fitted features)."""
        return np.asarray(self.model_.transform(self._prepare(x)))

    def fit_transform(self, x: Any) -> np.ndarray:
        """Fit on ``x`` and embed it."""
        return self.fit(x).transform(x)


def joint_embedding(
    x: Any, y: Any, modality: str = "rna", n_comps: int = 50, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Embed two sets of cells in one :class:`Embedding` fitted on both together.

    Neither set defines the space, so the embedding favours neither: two samples of one
    distribution are then exchangeable, which is what an unbiased comparison needs.

    Parameters
    ----------
    x, y
        Cells x features raw counts (dense or sparse) with the same features.
    modality
        ``"rna"``, ``"protein"`` or ``"atac"`` (see :class:`Embedding`).
    n_comps
        Components.
    random_state
        Seed of the solver.

    Returns
    -------
    ``(x_embedded, y_embedded)``.
    """
    stack = sparse.vstack if sparse.issparse(x) or sparse.issparse(y) else np.vstack
    pooled = stack([x, y])
    pooled = pooled.tocsr() if sparse.issparse(pooled) else np.asarray(pooled)
    z = Embedding(modality, n_comps, random_state).fit_transform(pooled)
    return z[: x.shape[0]], z[x.shape[0] :]
