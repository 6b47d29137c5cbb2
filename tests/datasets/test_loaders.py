from __future__ import annotations

import sys
import types

import h5py
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from scdx_scvi.datasets import _loaders, pbmc_multiome_10x, read_local, simulate_multiome

FNAME = "pbmc_granulocyte_sorted_10k_filtered_feature_bc_matrix.h5"


@pytest.fixture(scope="module")
def small():
    mdata, _ = simulate_multiome(n_cells=40, n_genes=30, n_peaks=60, n_proteins=3, seed=0)
    return mdata


def _write_10x_h5(path, x, barcodes, ids, names, feature_types):
    """Write a Cell Ranger (ARC) style feature-barcode matrix: features × cells, CSC."""
    x = sparse.csr_matrix(x)  # cells × features in CSR == features × cells in CSC
    with h5py.File(path, "w") as f:
        matrix = f.create_group("matrix")
        matrix["barcodes"] = np.array(barcodes, dtype="S")
        matrix["data"] = x.data.astype(np.int32)
        matrix["indices"] = x.indices.astype(np.int64)
        matrix["indptr"] = x.indptr.astype(np.int64)
        matrix["shape"] = np.array([x.shape[1], x.shape[0]], dtype=np.int32)
        features = matrix.create_group("features")
        features["id"] = np.array(ids, dtype="S")
        features["name"] = np.array(names, dtype="S")
        features["feature_type"] = np.array(feature_types, dtype="S")
        features["genome"] = np.array(["GRCh38"] * len(ids), dtype="S")
        features["_all_tag_keys"] = np.array([b"genome"])


@pytest.fixture
def multiome_h5(tmp_path):
    rng = np.random.default_rng(0)
    n_cells, n_genes, n_peaks = 12, 5, 7
    x = rng.poisson(1.0, size=(n_cells, n_genes + n_peaks))
    x[:, n_genes:] = np.minimum(x[:, n_genes:], 2)
    peaks = [f"chr1:{1000 * i}-{1000 * i + 500}" for i in range(1, n_peaks + 1)]
    path = tmp_path / "raw" / FNAME
    path.parent.mkdir()
    _write_10x_h5(
        path,
        x,
        barcodes=[f"AAAC{i:04d}-1" for i in range(n_cells)],
        ids=[f"ENSG{i:05d}" for i in range(n_genes)] + peaks,
        # A duplicated gene symbol, as in real Cell Ranger output.
        names=["CD3E", "MS4A1", "TBC1D3D", "TBC1D3D", "NKG7", *peaks],
        feature_types=["Gene Expression"] * n_genes + ["Peaks"] * n_peaks,
    )
    return path, x, n_genes


@pytest.fixture
def fake_pooch(monkeypatch):
    """Replace ``pooch`` (no network in tests) by a module whose ``retrieve`` records its call."""
    calls = []
    module = types.ModuleType("pooch")

    def retrieve(url, known_hash, fname=None, path=None, progressbar=False):
        calls.append({"url": url, "known_hash": known_hash, "fname": fname, "path": path})
        return str(module.source)

    module.retrieve = retrieve
    monkeypatch.setitem(sys.modules, "pooch", module)
    return module, calls


def test_read_local_h5mu_round_trip(small, tmp_path):
    path = tmp_path / "small.h5mu"
    small.write(path)
    for given in (path, str(path)):
        read = read_local(given)
        assert isinstance(read, MuData)
        assert list(read.mod) == ["rna", "atac", "protein"]
        for mod in read.mod:
            assert (read[mod].X != small[mod].X).nnz == 0
            assert (read[mod].layers["counts"] != small[mod].X).nnz == 0
            assert read[mod].var_names.equals(small[mod].var_names)
        pd.testing.assert_frame_equal(read.obs[["cell_type", "batch"]], small.obs)


def test_read_local_h5ad_is_one_modality(small, tmp_path):
    path = tmp_path / "rna.H5AD"
    small["rna"].write_h5ad(path)
    read = read_local(path)
    assert isinstance(read, AnnData) and not isinstance(read, MuData)
    assert read.shape == small["rna"].shape
    assert (read.X != small["rna"].X).nnz == 0


def test_read_local_missing_file(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "data.h5mu"
    with pytest.raises(
        FileNotFoundError, match=r"Cannot read .*nowhere.*data\.h5mu.*does not exist"
    ):
        read_local(missing)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="relative paths start from"):
        read_local("missing.h5ad")
    folder = tmp_path / "folder.h5ad"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="is a directory, not a file"):
        read_local(folder)


@pytest.mark.parametrize("name", ["counts.csv", "matrix.h5", "no_extension"])
def test_read_local_unknown_extension(tmp_path, name):
    path = tmp_path / name
    path.write_text("")
    with pytest.raises(ValueError, match=r"unknown extension .*Supported: \['\.h5ad', '\.h5mu'\]"):
        read_local(path)


def test_pbmc_multiome_downloads_with_url_and_hash_and_parses(
    fake_pooch, multiome_h5, tmp_path, monkeypatch
):
    module, calls = fake_pooch
    module.source, x, n_genes = multiome_h5
    monkeypatch.setattr(_loaders, "PBMC_MULTIOME_10X_SHA256", "sha256:" + "0" * 64)
    cache = tmp_path / "cache" / "nested"
    mdata = pbmc_multiome_10x(save_path=cache)

    assert calls == [
        {
            "url": _loaders.PBMC_MULTIOME_10X_URL,
            "known_hash": "sha256:" + "0" * 64,
            "fname": FNAME,
            "path": cache,
        }
    ]
    assert cache.is_dir()
    assert _loaders.PBMC_MULTIOME_10X_URL.startswith("https://cf.10xgenomics.com/")
    assert _loaders.PBMC_MULTIOME_10X_URL.endswith(FNAME)

    assert isinstance(mdata, MuData) and list(mdata.mod) == ["rna", "atac"]
    rna, atac = mdata["rna"], mdata["atac"]
    assert list(rna.var_names) == ["CD3E", "MS4A1", "TBC1D3D", "TBC1D3D-1", "NKG7"]
    assert list(rna.var["gene_ids"]) == [f"ENSG{i:05d}" for i in range(n_genes)]
    assert list(atac.var_names[:2]) == ["chr1:1000-1500", "chr1:2000-2500"]
    assert set(rna.var["feature_types"]) == {"Gene Expression"}
    assert set(atac.var["feature_types"]) == {"Peaks"}
    for adata, expected in ((rna, x[:, :n_genes]), (atac, x[:, n_genes:])):
        assert adata.obs_names.equals(mdata.obs_names)
        assert list(adata.obs_names[:2]) == ["AAAC0000-1", "AAAC0001-1"]
        assert isinstance(adata.X, sparse.csr_matrix) and adata.X.dtype == np.float32
        np.testing.assert_array_equal(adata.X.toarray(), expected)
        np.testing.assert_array_equal(adata.layers["counts"].toarray(), expected)
        assert adata.layers["counts"] is not adata.X


def test_pbmc_multiome_passes_the_module_hash_constant(fake_pooch, multiome_h5, tmp_path):
    module, calls = fake_pooch
    module.source = multiome_h5[0]
    pbmc_multiome_10x(save_path=str(tmp_path))
    assert calls[0]["known_hash"] is _loaders.PBMC_MULTIOME_10X_SHA256
    assert calls[0]["path"] == tmp_path


def test_pbmc_multiome_rejects_a_matrix_without_peaks(fake_pooch, tmp_path):
    module, _ = fake_pooch
    module.source = tmp_path / "gex_only.h5"
    _write_10x_h5(
        module.source,
        np.ones((3, 2)),
        barcodes=["A-1", "B-1", "C-1"],
        ids=["ENSG0", "ENSG1"],
        names=["CD3E", "NKG7"],
        feature_types=["Gene Expression"] * 2,
    )
    with pytest.raises(ValueError, match="no 'Peaks' features.*Multiome"):
        pbmc_multiome_10x(save_path=tmp_path)


def test_pbmc_multiome_without_pooch(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pooch", None)  # makes `import pooch` fail
    with pytest.raises(ImportError, match="pip install pooch"):
        pbmc_multiome_10x(save_path=tmp_path)
