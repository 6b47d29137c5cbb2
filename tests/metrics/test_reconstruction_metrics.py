from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.metrics import roc_auc_score

from scdx_scvi.metrics import (
    auroc_per_feature,
    log_cp10k,
    pearson_per_feature,
    reconstruction_scores,
)


def test_pearson_per_feature_by_hand():
    y = np.array([[1.0, 0.0, 2.0], [2.0, 0.0, 2.0], [3.0, 0.0, 2.0]])
    p = np.array([[2.0, 1.0, 0.0], [4.0, 2.0, 1.0], [6.0, 3.0, 5.0]])
    # column 0: perfectly correlated; columns 1 and 2 have zero variance in y -> 0
    np.testing.assert_allclose(pearson_per_feature(y, p), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(pearson_per_feature(y, -p)[0], -1.0)


def test_pearson_per_feature_matches_numpy_on_sparse_input():
    rng = np.random.default_rng(0)
    y = rng.poisson(1.0, size=(50, 7)).astype(float)
    p = y + rng.normal(size=y.shape)
    expected = [np.corrcoef(y[:, j], p[:, j])[0, 1] for j in range(7)]
    np.testing.assert_allclose(pearson_per_feature(sparse.csr_matrix(y), p), expected)


def test_auroc_per_feature_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    truth = rng.random((40, 6)) < 0.3
    score = np.round(rng.random((40, 6)) + truth * 0.3, 1)  # rounding creates ties
    truth[:, 5] = False  # one class only -> undefined
    auc = auroc_per_feature(sparse.csr_matrix(truth.astype(float) * 3), score)
    expected = [roc_auc_score(truth[:, j], score[:, j]) for j in range(5)]
    np.testing.assert_allclose(auc[:5], expected)
    assert np.isnan(auc[5])


def test_auroc_by_hand():
    truth = np.array([[1], [0], [1], [0]])
    score = np.array([[0.9], [0.1], [0.4], [0.4]])
    # positive pairs: (0.9 > 0.1), (0.9 > 0.4), (0.4 > 0.1), (0.4 = 0.4 -> 1/2) -> 3.5 / 4
    np.testing.assert_allclose(auroc_per_feature(truth, score), [0.875])


def test_log_cp10k():
    x = sparse.csr_matrix(np.array([[1.0, 3.0], [0.0, 2.0]]))
    expected = np.log1p([[2500.0, 7500.0], [0.0, 1e4]])
    np.testing.assert_allclose(log_cp10k(x).toarray(), expected)
    np.testing.assert_allclose(log_cp10k(x.toarray()), expected)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="Shapes differ"):
        pearson_per_feature(np.zeros((3, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="Shapes differ"):
        auroc_per_feature(np.zeros((3, 2)), np.zeros((3, 3)))


def test_reconstruction_scores():
    rna = np.array([[1.0, 3.0, 0.0], [2.0, 2.0, 4.0], [0.0, 5.0, 1.0]])
    atac = sparse.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    scores = reconstruction_scores(
        {"rna": rna, "atac": atac},
        {"rna": np.expm1(log_cp10k(rna)), "atac": atac.toarray() / 2},
    )
    assert scores["rna_pearson_per_gene"] == pytest.approx(1.0)
    assert scores["atac_auroc_per_peak"] == pytest.approx(1.0)
    assert scores["atac_peaks_scored"] == 2
    assert scores["atac_prevalence"] == pytest.approx(4 / 6)
