from __future__ import annotations

import mudata as md
import numpy as np
import pytest

from scdx_scvi.data import pad_mosaic
from scdx_scvi.datasets import simulate_multiome


@pytest.fixture
def mosaic():
    mdata, _ = simulate_multiome(n_cells=60, n_genes=10, n_peaks=20)
    return md.MuData({"rna": mdata["rna"][:40].copy(), "atac": mdata["atac"][20:].copy()})


def test_float16_layers_are_padded(mosaic):
    original = mosaic["rna"].X.toarray()
    mosaic["rna"].X = original.astype(np.float16)
    padded = pad_mosaic(mosaic)
    assert padded["rna"].X.dtype == np.float32
    rows = padded.obs_names.get_indexer(mosaic["rna"].obs_names)
    np.testing.assert_array_equal(padded["rna"].X[rows].toarray(), original)


def test_bad_input(mosaic, tmp_path):
    with pytest.raises(TypeError, match="needs a MuData"):
        pad_mosaic(mosaic["rna"])
    with pytest.raises(TypeError, match="observed_prefix"):
        pad_mosaic(mosaic, observed_prefix=5)
    mosaic.obs["has_rna"] = "user column"
    with pytest.raises(ValueError, match=r"\['has_rna'\].*observed_prefix"):
        pad_mosaic(mosaic)
    del mosaic.obs["has_rna"]
    mosaic.write(tmp_path / "mosaic.h5mu")
    with pytest.raises(ValueError, match="backed"):
        pad_mosaic(md.read_h5mu(tmp_path / "mosaic.h5mu", backed="r"))
