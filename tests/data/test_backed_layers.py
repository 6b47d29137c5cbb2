"""Reading rows of layers that stay on disk (backed AnnData and MuData)."""

from __future__ import annotations

import anndata as ad
import h5py
import numpy as np
import pytest
from scipy import sparse

from scdx_scvi.data import align_features
from scdx_scvi.data._validate import check_values, read_rows

ROWS = [7, 2, 2, 0, 9]  # out of order and repeated, as `indices=` may be


@pytest.fixture
def counts():
    rng = np.random.default_rng(0)
    return sparse.csr_matrix(rng.poisson(0.6, size=(12, 6)).astype(np.float32))


@pytest.mark.parametrize("rows", [None, ROWS, []])
def test_read_rows_from_backed_sparse(counts, rows, tmp_path):
    ad.AnnData(counts).write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    expected = counts if rows is None else counts[np.asarray(rows, dtype=int)]
    got = read_rows(backed.X, rows)
    assert sparse.isspmatrix_csr(got)
    np.testing.assert_array_equal(got.toarray(), expected.toarray())


def test_read_rows_from_h5py_dense(counts, tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = counts.toarray()
    with h5py.File(tmp_path / "x.h5", "r") as f:
        np.testing.assert_array_equal(read_rows(f["x"], ROWS).toarray(), counts[ROWS].toarray())


def test_check_values_of_backed_layer(counts, tmp_path, monkeypatch):
    """The check reads a backed layer block by block and finds the same rows with counts."""
    counts = sparse.csr_matrix(counts.toarray() * (np.arange(12) != 3)[:, None])
    ad.AnnData(counts).write_h5ad(tmp_path / "a.h5ad")
    monkeypatch.setattr("scdx_scvi.data._validate._BACKED_CHUNK", 5)  # several blocks
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    np.testing.assert_array_equal(
        check_values(backed.X, "rna", "X"), check_values(counts, "rna", "X")
    )


def test_align_features_reads_only_the_rows(counts, tmp_path):
    adata = ad.AnnData(counts)
    adata.var_names = [f"g{i}" for i in range(6)]
    adata.write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    features = ["g5", "g0", "missing"]
    got, n_missing = align_features(backed, features, "rna", rows=ROWS)
    expected, _ = align_features(adata, features, "rna", rows=ROWS)
    assert n_missing == 1
    np.testing.assert_array_equal(got.toarray(), expected.toarray())
    np.testing.assert_array_equal(got.toarray()[:, :2], counts[ROWS][:, [5, 0]].toarray())
