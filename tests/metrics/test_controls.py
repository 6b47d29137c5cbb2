from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from scdx_scvi.metrics import knn_prediction, mean_profile_prediction

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
