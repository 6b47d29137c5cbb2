from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from scdx_scvi.metrics import knn_prediction, mean_profile_prediction, ridge_prediction

# Four training cells. ATAC source: cells 0 and 1 differ in one peak, cells 2 and 3 in one peak,
# and the two pairs share none, so the nearest neighbours are known by hand.
ATAC_SOURCE = np.array(
    [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 1, 1, 1],
    ],
    dtype=np.float32,
)
RNA_TARGET = np.array([[1, 0, 1], [0, 2, 2], [3, 1, 0], [0, 0, 4]], dtype=np.float32)
#: RNA_TARGET per 10,000 counts.
RNA_CP10K = np.array(
    [[5000, 0, 5000], [0, 5000, 5000], [7500, 2500, 0], [0, 0, 10000]], dtype=np.float64
)


def test_mean_profile_is_the_column_mean_per_10k_counts():
    prediction = mean_profile_prediction(np.array([[1, 3], [2, 2]]), 3, "rna")
    np.testing.assert_allclose(prediction, [[3750, 6250]] * 3)
    assert prediction.dtype == np.float64

    np.testing.assert_allclose(
        mean_profile_prediction(sparse.csr_matrix(RNA_TARGET), 2, "protein"),
        np.tile(RNA_CP10K.mean(axis=0), (2, 1)),
    )


def test_mean_profile_of_atac_is_the_share_of_open_cells():
    counts = np.array([[0, 2, 1], [1, 0, 0], [0, 1, 0], [0, 1, 0]])  # 2 means open too
    prediction = mean_profile_prediction(sparse.csr_matrix(counts), 2, "atac")
    np.testing.assert_allclose(prediction, [[0.25, 0.75, 0.25]] * 2)


def test_mean_profile_for_no_cells_and_bad_modality():
    assert mean_profile_prediction(RNA_TARGET, 0, "rna").shape == (0, 3)
    with pytest.raises(ValueError, match="modality"):
        mean_profile_prediction(RNA_TARGET, 2, "peaks")


def test_knn_with_one_neighbour_returns_the_nearest_cell_target():
    query = ATAC_SOURCE[[2, 0]].copy()
    query[1, 0] = 2  # ATAC counts are binarised: a 2 is the same open peak
    prediction = knn_prediction(ATAC_SOURCE, RNA_TARGET, query, "atac", "rna", k=1)
    np.testing.assert_allclose(prediction, RNA_CP10K[[2, 0]])


def test_knn_averages_the_normalised_targets_of_the_k_nearest_cells():
    query = ATAC_SOURCE[[0, 3]]
    prediction = knn_prediction(
        sparse.csr_matrix(ATAC_SOURCE), sparse.csr_matrix(RNA_TARGET), query, "atac", "rna", k=2
    )
    expected = [RNA_CP10K[[0, 1]].mean(axis=0), RNA_CP10K[[2, 3]].mean(axis=0)]
    np.testing.assert_allclose(prediction, expected)
    # all training cells as neighbours: the mean profile
    everyone = knn_prediction(ATAC_SOURCE, RNA_TARGET, query, "atac", "rna", k=4)
    np.testing.assert_allclose(everyone, mean_profile_prediction(RNA_TARGET, 2, "rna"))


def test_knn_to_atac_is_the_share_of_open_neighbours():
    # RNA source: cells 0 and 1 express genes 0-2, cells 2 and 3 genes 3-5
    rna = np.array(
        [[5, 4, 3, 0, 0, 0], [4, 5, 3, 0, 0, 0], [0, 0, 0, 3, 4, 5], [0, 0, 0, 3, 5, 4]],
        dtype=np.float32,
    )
    atac = np.array([[1, 0, 2], [1, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=np.float32)
    prediction = knn_prediction(rna, atac, rna[[1, 2]], "rna", "atac", k=2)
    np.testing.assert_allclose(prediction, [[1.0, 0.5, 0.5], [0.0, 0.5, 1.0]])


def test_knn_checks_its_inputs():
    with pytest.raises(ValueError, match="between 1 and the 4 training cells"):
        knn_prediction(ATAC_SOURCE, RNA_TARGET, ATAC_SOURCE, "atac", "rna", k=5)
    with pytest.raises(ValueError, match="features"):
        knn_prediction(ATAC_SOURCE, RNA_TARGET, ATAC_SOURCE[:, :4], "atac", "rna", k=1)
    with pytest.raises(ValueError, match="cells"):
        knn_prediction(ATAC_SOURCE, RNA_TARGET[:3], ATAC_SOURCE, "atac", "rna", k=1)
    with pytest.raises(ValueError, match="source"):
        knn_prediction(ATAC_SOURCE, RNA_TARGET, ATAC_SOURCE, "dna", "rna", k=1)


def test_ridge_recovers_a_linear_target_and_beats_the_mean():
    rng = np.random.default_rng(0)
    programme = rng.gamma(2.0, 1.0, size=(400, 3))
    source = rng.poisson(20 * programme @ rng.gamma(1.0, 2.0, size=(3, 40)))
    target = rng.poisson(50 * programme @ rng.gamma(1.0, 1.0, size=(3, 8)))
    train, query = slice(0, 300), slice(300, 400)
    ridge = ridge_prediction(source[train], target[train], source[query], "rna", "protein")
    mean = mean_profile_prediction(target[train], 100, "protein")
    truth = np.log1p(target[query] / target[query].sum(1, keepdims=True) * 1e4)

    def error(prediction):
        return np.mean((np.log1p(prediction) - truth) ** 2)

    assert ridge.shape == (100, 8) and (ridge >= 0).all()
    assert error(ridge) < 0.5 * error(mean)


def test_ridge_to_atac_predicts_probabilities_from_sparse_input():
    source = sparse.csr_matrix(np.tile(ATAC_SOURCE, (5, 1)))
    target = sparse.csr_matrix(np.tile((RNA_TARGET > 1).astype(np.float32), (5, 1)))
    prediction = ridge_prediction(source, target, source[:4], "atac", "atac", alpha=1e-6, n_comps=3)
    assert ((prediction >= 0) & (prediction <= 1)).all()
    # cells 2 and 3 differ from 0 and 1, and the target's third peak separates them
    assert prediction[1, 2] > prediction[2, 2]


def test_ridge_checks_its_inputs():
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match="`alpha` must be non-negative"):
        ridge_prediction(x, x, x, "rna", "rna", alpha=-1)
    with pytest.raises(ValueError, match="`target` must be one of"):
        ridge_prediction(x, x, x, "rna", "dna")
    with pytest.raises(ValueError, match="query_source has 2 features"):
        ridge_prediction(x, x, x[:, :2], "rna", "rna")
