from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from scdx_scvi.datasets import simulate_multiome
from scdx_scvi.metrics import profile_diagnostics


@pytest.fixture(scope="module")
def simulated():
    mdata, _ = simulate_multiome(n_cells=400, n_genes=120, n_peaks=300, n_proteins=8, seed=1)
    return mdata


def test_a_set_equal_to_the_real_cells_is_ideal(simulated):
    rna = simulated["rna"].X
    out = profile_diagnostics(rna, {"same": rna.copy()}, "rna")
    same = out["same"]
    assert same["library_size_median_ratio"] == pytest.approx(1.0)
    assert same["detected_median_ratio"] == pytest.approx(1.0)
    assert same["feature_mean_log_pearson"] == pytest.approx(1.0)
    assert same["feature_variance_log_pearson"] == pytest.approx(1.0)
    assert same["zero_fraction_mae"] == pytest.approx(0.0)
    assert same["mean_variance_slope"] == pytest.approx(out["real"]["mean_variance_slope"])
    assert out["real"]["library_size_median"] == pytest.approx(
        np.median(np.asarray(rna.sum(axis=1)).ravel())
    )


def test_deeper_cells_and_extra_open_peaks_are_reported(simulated):
    rna, atac = simulated["rna"].X, sparse.csr_matrix(simulated["atac"].X)
    doubled = profile_diagnostics(rna, {"deeper": rna * 2}, "rna")["deeper"]
    assert doubled["library_size_median_ratio"] == pytest.approx(2.0)
    assert doubled["detected_median_ratio"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noisy = (atac > 0).astype(np.float32) + sparse.random(
        *atac.shape, density=0.2, random_state=rng, format="csr"
    )
    extra = profile_diagnostics(atac, {"noisy": noisy}, "atac")["noisy"]
    # ATAC: the library size is the number of open peaks, counts are binarised
    assert extra["library_size_median_ratio"] == extra["detected_median_ratio"] > 1.2
    assert extra["zero_fraction_mae"] > 0.1


def test_per_type_and_protein_background(simulated):
    protein, labels = simulated["protein"].X, simulated.obs["cell_type"].to_numpy()
    out = profile_diagnostics(
        protein, {"same": protein}, "protein", real_labels=labels, set_labels={"same": labels}
    )
    assert "background" in out["real"] and out["same"]["background"] == out["real"]["background"]
    per_type = out["same"]["per_type"]
    assert per_type
    assert all(v["library_size_ratio"] == pytest.approx(1.0) for v in per_type.values())
    with pytest.raises(ValueError, match="features"):
        profile_diagnostics(protein, {"bad": protein[:, :3]}, "protein")
