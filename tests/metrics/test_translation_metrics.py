from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.spatial import distance_matrix
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from scdx_scvi.metrics import (
    auprc_per_feature,
    auroc_auprc_flat,
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


def _pair(seed: int = 0, shape: tuple[int, int] = (11, 9)) -> tuple[np.ndarray, np.ndarray]:
    """Count-like truth with many ties and zeros, and a noisy prediction with ties."""
    rng = np.random.default_rng(seed)
    y = rng.poisson(0.8, size=shape).astype(float)
    p = np.round(y + rng.normal(scale=0.8, size=shape), 1)
    return y, p


def _brute_foscttm(x: np.ndarray, y: np.ndarray) -> float:
    d = distance_matrix(x, y)
    true = np.diag(d)
    return float(
        ((d < true[:, None]).mean(axis=1).mean() + (d < true[None]).mean(axis=0).mean()) / 2
    )


def test_pearson_per_cell_by_hand():
    y = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    p = np.array([[2.0, 4.0, 6.0], [1.0, 2.0, 3.0], [0.0, -1.0, 0.0]])
    # perfectly correlated; zero SD in the truth -> 0; perfectly anti-correlated
    np.testing.assert_allclose(pearson_per_cell(y, p), [1.0, 0.0, -1.0])


def test_spearman_by_hand():
    y = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    p = np.array([[1.0, 4.0, 9.0, 16.0], [10.0, 20.0, 20.0, 5.0]])
    # row 0: monotone -> 1 (Pearson is below 1); row 1: ranks (1,2,3,4) vs (2,3.5,3.5,1)
    # centred: (-1.5,-.5,.5,1.5) . (-.5,1,1,-1.5) = -1.5; norms 5 and 4.5 -> -1.5/sqrt(22.5)
    np.testing.assert_allclose(spearman_per_cell(y, p), [1.0, -1.0 / np.sqrt(10.0)])
    assert pearson_per_cell(y, p)[0] < 1.0
    np.testing.assert_allclose(spearman_per_feature(y.T, p.T), [1.0, -1.0 / np.sqrt(10.0)])


@pytest.mark.parametrize("rank", [False, True])
@pytest.mark.parametrize("per", ["cell", "feature"])
@pytest.mark.parametrize("as_sparse", [False, True])
def test_correlations_match_scipy_with_small_chunks(rank, per, as_sparse):
    y, p = _pair()
    y[2, :] = 3.0  # constant cell
    y[:, 4] = 0.0  # constant feature
    if per == "feature":
        y, p = y.T.copy(), p.T.copy()  # vectors are columns: test on the transposed problem
    reference = spearmanr if rank else pearsonr
    expected = [
        0.0 if np.ptp(y[i]) == 0 or np.ptp(p[i]) == 0 else reference(y[i], p[i])[0]
        for i in range(y.shape[0])
    ]
    if per == "feature":
        y, p = y.T, p.T
        fn = spearman_per_feature if rank else pearson_per_feature
        kwargs = {"chunk_size": 3} if rank else {}
    else:
        fn = spearman_per_cell if rank else pearson_per_cell
        kwargs = {"chunk_size": 3}
    y_in = sparse.csr_matrix(y) if as_sparse else y
    result = fn(y_in, p, **kwargs)
    np.testing.assert_allclose(result, expected, atol=1e-12)
    assert np.all(np.abs(result) <= 1.0)


def test_chunk_size_does_not_change_results():
    y, p = _pair(shape=(20, 13))
    for fn in (pearson_per_cell, spearman_per_cell, spearman_per_feature):
        np.testing.assert_allclose(fn(y, p, chunk_size=1), fn(y, p), atol=1e-12)


def test_overall_by_hand():
    y = np.array([[0.0, 1.0], [2.0, 0.0]])
    assert pearson_overall(y, 2 * y + 1) == pytest.approx(1.0)
    assert spearman_overall(y, y**3) == pytest.approx(1.0)
    assert pearson_overall(y, np.ones_like(y)) == 0.0  # constant prediction


@pytest.mark.parametrize("as_sparse", [False, True])
def test_overall_matches_scipy(as_sparse):
    y, p = _pair(1)
    y[0, 0] = -2.0  # negative entries exercise the sparse ranking of non-zeros
    p = np.where(np.abs(p) < 0.3, 0.0, p)
    if as_sparse:
        y_in = sparse.csr_matrix(y)
        y_in[1, 1] = 0.0  # explicit stored zero must rank with the other zeros
        p_in = sparse.csc_matrix(p)
    else:
        y_in, p_in = y, p
    assert pearson_overall(y_in, p_in, chunk_size=2) == pytest.approx(
        pearsonr(y.ravel(), p.ravel())[0], abs=1e-12
    )
    assert spearman_overall(y_in, p_in, chunk_size=2) == pytest.approx(
        spearmanr(y.ravel(), p.ravel())[0], abs=1e-12
    )


@pytest.mark.parametrize(
    ("to_true", "to_pred"),
    [
        (np.asarray, np.asarray),
        (sparse.csr_matrix, np.asarray),
        (sparse.csr_matrix, sparse.csr_matrix),
    ],
)
def test_rmse_by_hand(to_true, to_pred):
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    p = np.array([[1.0, 2.0], [3.0, 0.0]])
    assert rmse(to_true(y), to_pred(p), chunk_size=1) == pytest.approx(2.0)  # sqrt(16 / 4)


def test_auprc_by_hand():
    truth = np.array([[1], [0], [1], [0]])
    score = np.array([[0.9], [0.1], [0.4], [0.4]])
    # thresholds 0.9: precision 1/1; 0.4: 2/3 (tie counted together); AP = (1 + 2/3) / 2
    np.testing.assert_allclose(auprc_per_feature(truth, score), [5 / 6])


def test_auprc_per_feature_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    truth = rng.random((40, 7)) < 0.3
    score = np.round(rng.random((40, 7)) + truth * 0.3, 1)  # rounding creates ties
    truth[:, 5] = False  # one class only -> undefined
    truth[:, 6] = True
    ap = auprc_per_feature(sparse.csr_matrix(truth.astype(float) * 2), score, chunk_size=3)
    expected = [average_precision_score(truth[:, j], score[:, j]) for j in range(5)]
    np.testing.assert_allclose(ap[:5], expected)
    assert np.isnan(ap[5]) and np.isnan(ap[6])


@pytest.mark.parametrize("as_sparse", [False, True])
def test_auroc_auprc_flat_matches_sklearn(as_sparse):
    rng = np.random.default_rng(3)
    truth = (rng.random((15, 8)) < 0.2).astype(float)
    score = np.round(rng.random((15, 8)) + truth * 0.4, 2)
    out = auroc_auprc_flat(sparse.csr_matrix(truth) if as_sparse else truth, score)
    assert out["auroc"] == pytest.approx(roc_auc_score(truth.ravel() > 0, score.ravel()))
    assert out["auprc"] == pytest.approx(average_precision_score(truth.ravel() > 0, score.ravel()))
    assert out["prevalence"] == pytest.approx(truth.mean())
    assert out["n_entries"] == truth.size


def test_auroc_auprc_flat_subsamples_cells_and_handles_one_class():
    rng = np.random.default_rng(4)
    truth = sparse.csr_matrix((rng.random((50, 4)) < 0.5).astype(float))
    out = auroc_auprc_flat(truth, truth.toarray(), max_entries=40)
    assert out["n_entries"] == 40  # 10 cells x 4 features
    assert out["auroc"] == pytest.approx(1.0) and out["auprc"] == pytest.approx(1.0)
    empty = auroc_auprc_flat(np.zeros((3, 2)), rng.random((3, 2)))
    assert np.isnan(empty["auroc"]) and np.isnan(empty["auprc"]) and empty["prevalence"] == 0


def test_foscttm_by_hand():
    x = np.array([[0.0], [1.0], [3.0]])
    y = np.array([[0.5], [0.0], [3.0]])
    # d = |x_i - y_j| = [[.5, 0, 3], [.5, 1, 2], [2.5, 3, 0]]
    # f_x = (1/3, 1/3, 0); f_y = (0, 1/3, 0) (the tie d[1,0] = d[0,0] is not closer)
    assert foscttm(x, y, chunk_size=2) == pytest.approx((2 / 9 + 1 / 9) / 2)
    assert foscttm(x, x) == 0.0
    assert foscttm(x[:2] * 10, x[:2][::-1] * 10) == pytest.approx(0.5)  # swapped pairs


@pytest.mark.parametrize("chunk_size", [1, 4, 100])
def test_foscttm_chunked_matches_full_matrix(chunk_size):
    rng = np.random.default_rng(5)
    y = rng.normal(size=(17, 3))
    x = y + rng.normal(scale=0.7, size=y.shape)
    assert foscttm(x, sparse.csr_matrix(y), chunk_size=chunk_size) == _brute_foscttm(x, y)


def test_foscttm_exact_ties_with_identical_predictions():
    # A constant predictor: every d[i, j] equals d[j, j], so no cell is closer in the y direction.
    rng = np.random.default_rng(6)
    y = rng.normal(size=(9, 4))
    x = np.tile([[0.1, 0.7, -0.3, 1.9]], (9, 1))
    assert foscttm(x, y, chunk_size=2) == pytest.approx(_brute_foscttm(x, y))
    assert foscttm(x, y) == pytest.approx((np.arange(9) / 9).mean() / 2)


def test_knn_label_transfer_by_hand():
    reference = np.array([[0.0], [1.0], [10.0], [11.0]])
    labels = np.array(["a", "a", "b", "b"])
    query = sparse.csr_matrix(np.array([[0.5], [10.5], [0.2]]))
    out = knn_label_transfer_accuracy(reference, labels, query, ["a", "b", "b"], k=1)
    # predictions a, b, a: accuracy 2/3; F1(a) = F1(b) = 2/3
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["macro_f1"] == pytest.approx(2 / 3)
    assert out["n_query"] == 3 and out["k"] == 1
    perfect = knn_label_transfer_accuracy(reference, labels, reference, labels, k=2)
    assert perfect["accuracy"] == 1.0 and perfect["macro_f1"] == 1.0


@pytest.mark.parametrize(
    "fn",
    [
        pearson_per_cell,
        spearman_per_cell,
        spearman_per_feature,
        pearson_overall,
        spearman_overall,
        rmse,
        auprc_per_feature,
        auroc_auprc_flat,
        foscttm,
    ],
)
def test_shape_mismatch(fn):
    with pytest.raises(ValueError, match="Shapes differ"):
        fn(np.zeros((3, 2)), np.zeros((2, 3)))


def test_bad_inputs_knn():
    with pytest.raises(ValueError, match="Feature dimensions differ"):
        knn_label_transfer_accuracy(np.zeros((4, 2)), list("aabb"), np.zeros((2, 3)), list("ab"))
    with pytest.raises(ValueError, match="reference_labels"):
        knn_label_transfer_accuracy(np.zeros((4, 2)), list("aab"), np.zeros((2, 2)), list("ab"))
    with pytest.raises(ValueError, match="k must be"):
        knn_label_transfer_accuracy(
            np.zeros((4, 2)), list("aabb"), np.zeros((2, 2)), list("ab"), k=5
        )
    with pytest.raises(ValueError, match="got 1-D"):
        pearson_per_cell(np.zeros(3), np.zeros(3))
