from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import scvi
from helpers import QUIET, TINY
from scipy import sparse, stats

from scdx_scvi import SCDX
from scdx_scvi.datasets import simulate_multiome

LINK_WINDOW = 100_000


@pytest.fixture(scope="module")
def default():
    """The simulator at its default sizes (2000 cells, 1000 genes, 5000 peaks)."""
    return simulate_multiome(seed=0)


@pytest.fixture(scope="module")
def medium():
    """Enough cells for the link statistics, with proteins."""
    return simulate_multiome(n_cells=2000, n_genes=500, n_peaks=2500, n_proteins=10, seed=0)


def _dense(mdata, mod) -> np.ndarray:
    return mdata[mod].X.toarray()


def _lognorm(x: np.ndarray, scale: float) -> np.ndarray:
    return np.log1p(x / x.sum(axis=1, keepdims=True) * scale)


def _column_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``a`` with the same column of ``b``."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    return np.nan_to_num(r)


def _center_within(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    x = x.copy()
    for g in np.unique(groups):
        x[groups == g] -= x[groups == g].mean(axis=0)
    return x


def test_shapes_names_and_storage(default):
    mdata, _ = default
    assert list(mdata.mod) == ["rna", "atac"]
    assert mdata["rna"].shape == (2000, 1000)
    assert mdata["atac"].shape == (2000, 5000)
    assert list(mdata["rna"].var_names[:2]) == ["gene_0", "gene_1"]
    assert all(re.fullmatch(r"chr\d+:\d+-\d+", p) for p in mdata["atac"].var_names)
    for mod in mdata.mod:
        adata = mdata[mod]
        assert adata.obs_names.equals(mdata.obs_names)
        assert adata.var_names.is_unique
        assert isinstance(adata.X, sparse.csr_matrix)
        assert adata.X.dtype == np.float32
        counts = adata.layers["counts"]
        assert isinstance(counts, sparse.csr_matrix)
        assert (counts != adata.X).nnz == 0
        assert counts is not adata.X and not np.shares_memory(counts.data, adata.X.data)
        assert np.array_equal(adata.X.data, np.round(adata.X.data)) and adata.X.data.min() >= 1
        assert np.asarray(adata.X.sum(axis=1)).min() > 0, f"a cell has no {mod} counts"
    assert mdata.obsm["latent"].shape == (2000, 10)


def test_obs_is_categorical_with_unequal_cell_types(default):
    mdata, _ = default
    for key, prefix, n in (("cell_type", "type_", 6), ("batch", "batch_", 2)):
        column = mdata.obs[key]
        assert isinstance(column.dtype, pd.CategoricalDtype)
        assert list(column.cat.categories) == [f"{prefix}{i}" for i in range(n)]
        assert not column.isna().any()
    sizes = mdata.obs["cell_type"].value_counts()
    assert sizes.min() > 0
    assert sizes.max() / sizes.min() > 1.5


def test_rna_is_sparse_overdispersed_with_varying_library_sizes(default):
    mdata, _ = default
    x = mdata["rna"].X
    zeros = 1 - x.nnz / np.prod(x.shape)
    assert 0.85 <= zeros <= 0.95
    library = np.asarray(x.sum(axis=1)).ravel()
    assert library.std() / library.mean() > 0.3
    # Negative binomial: variance well above the mean for expressed genes (Poisson: equal).
    dense = x.toarray()
    expressed = dense.mean(axis=0) > 1
    assert expressed.sum() > 20
    ratio = dense[:, expressed].var(axis=0) / dense[:, expressed].mean(axis=0)
    assert np.median(ratio) > 2


def test_batches_differ_in_depth_and_gene_scaling(default):
    mdata, _ = default
    x = _dense(mdata, "rna")
    batch = mdata.obs["batch"].to_numpy()
    library = x.sum(axis=1)
    medians = [np.median(library[batch == b]) for b in ("batch_0", "batch_1")]
    assert max(medians) / min(medians) > 1.1
    assert (
        stats.mannwhitneyu(library[batch == "batch_0"], library[batch == "batch_1"]).pvalue < 1e-6
    )
    # Within the largest cell type, per-gene log ratios between batches spread more than
    # between two random halves of one batch.
    cell_type = mdata.obs["cell_type"].to_numpy()
    largest = mdata.obs["cell_type"].value_counts().index[0]
    share = x / x.sum(axis=1, keepdims=True)
    in_0 = np.flatnonzero((cell_type == largest) & (batch == "batch_0"))
    in_1 = np.flatnonzero((cell_type == largest) & (batch == "batch_1"))
    genes = x[cell_type == largest].mean(axis=0) > 0.5
    halves = np.random.default_rng(0).permutation(in_0)
    half_a, half_b = halves[: in_0.size // 2], halves[in_0.size // 2 :]

    def log_ratio(a, b):
        return np.log(share[a][:, genes].mean(axis=0) / share[b][:, genes].mean(axis=0))

    assert log_ratio(in_0, in_1).std() > 1.5 * log_ratio(half_a, half_b).std()


def test_atac_is_mostly_binary_and_sparse(default):
    mdata, _ = default
    y = mdata["atac"].X
    density = y.nnz / np.prod(y.shape)
    assert 0.02 <= density <= 0.10
    values, counts = np.unique(y.data, return_counts=True)
    assert set(values) <= {1.0, 2.0}
    assert counts[values == 1.0].sum() / counts.sum() > 0.85
    depth = np.asarray(y.sum(axis=1)).ravel()
    assert depth.std() / depth.mean() > 0.2


def test_cell_types_differ_in_accessibility(default):
    mdata, _ = default
    y = _dense(mdata, "atac") > 0
    peak_class = mdata["atac"].var["peak_class"].to_numpy()
    cell_type = mdata.obs["cell_type"].to_numpy()
    profiles = np.stack([y[cell_type == k].mean(axis=0) for k in np.unique(cell_type)])
    spread = profiles.std(axis=0) / profiles.mean(axis=0).clip(1e-3)
    specific = spread[peak_class == "cell_type_specific"]
    constitutive = spread[peak_class == "constitutive"]
    assert np.median(specific) > 2 * np.median(constitutive)


def test_reproducible_with_seed_and_different_across_seeds():
    kwargs = {"n_cells": 150, "n_genes": 60, "n_peaks": 200, "n_proteins": 4}
    first, links_first = simulate_multiome(seed=3, **kwargs)
    again, links_again = simulate_multiome(seed=3, **kwargs)
    other, links_other = simulate_multiome(seed=4, **kwargs)
    for mod in first.mod:
        assert (first[mod].X != again[mod].X).nnz == 0
        assert first[mod].var_names.equals(again[mod].var_names)
    pd.testing.assert_frame_equal(first.obs, again.obs)
    pd.testing.assert_frame_equal(links_first, links_again)
    assert all((first[mod].X != other[mod].X).nnz > 0 for mod in first.mod)
    assert not first.obs["cell_type"].equals(other.obs["cell_type"])
    assert not links_first.equals(links_other)


def test_links_table_is_consistent(default):
    mdata, links = default
    assert list(links.columns) == ["gene", "peak", "effect"]
    assert len(links) == min(1000 // 5, 5000 // 10)
    assert not links.duplicated(["gene", "peak"]).any()
    assert links["gene"].isin(mdata["rna"].var_names).all()
    assert links["peak"].isin(mdata["atac"].var_names).all()
    assert (links["effect"] > 0).all()
    genes = mdata["rna"].var.loc[links["gene"]]
    peaks = mdata["atac"].var.loc[links["peak"]]
    assert (genes["chrom"].to_numpy() == peaks["chrom"].to_numpy()).all()
    centre = (peaks["start"].to_numpy() + peaks["end"].to_numpy()) // 2
    assert (np.abs(centre - genes["start"].to_numpy()) <= LINK_WINDOW).all()
    assert (peaks["peak_class"] == "cell_type_specific").all()


def test_n_links_is_honoured_or_refused():
    kwargs = {"n_cells": 50, "n_genes": 100, "n_peaks": 400}
    _, links = simulate_multiome(n_links=30, **kwargs)
    assert len(links) == 30
    mdata, links = simulate_multiome(n_links=0, **kwargs)
    assert links.empty and list(links.columns) == ["gene", "peak", "effect"]
    assert mdata["rna"].X.nnz > 0
    with pytest.raises(ValueError, match="Could plant only .* of n_links=5000"):
        simulate_multiome(n_links=5000, **kwargs)


def test_linked_genes_follow_their_peaks(medium):
    """Linked pairs are more correlated across cells than random pairs, also within types."""
    mdata, links = medium
    assert len(links) == 100
    x = _lognorm(_dense(mdata, "rna"), 1e4)
    y = (_dense(mdata, "atac") > 0).astype(np.float64)
    gene = mdata["rna"].var_names.get_indexer(links["gene"])
    peak = mdata["atac"].var_names.get_indexer(links["peak"])
    rng = np.random.default_rng(0)
    random_gene = rng.integers(x.shape[1], size=2000)
    random_peak = rng.integers(y.shape[1], size=2000)
    cell_type = mdata.obs["cell_type"].to_numpy()
    for a, b in ((x, y), (_center_within(x, cell_type), _center_within(y, cell_type))):
        linked = _column_corr(a[:, gene], b[:, peak])
        random = _column_corr(a[:, random_gene], b[:, random_peak])
        assert linked.mean() > random.mean() + 0.015
        assert stats.mannwhitneyu(linked, random, alternative="greater").pvalue < 1e-6


def test_proteins_have_background_and_follow_their_genes(medium):
    mdata, _ = medium
    protein = mdata["protein"]
    assert list(protein.var_names) == [f"protein_{j}" for j in range(10)]
    assert isinstance(protein.X, sparse.csr_matrix) and protein.X.dtype == np.float32
    assert (protein.layers["counts"] != protein.X).nnz == 0
    w = protein.X.toarray()
    assert np.array_equal(w, np.round(w)) and w.min() >= 0
    # Background: (almost) every protein is detected in (almost) every cell.
    assert (w > 0).mean() > 0.95
    tied = protein.var["gene"].to_numpy() != ""
    assert tied.sum() == 5
    assert protein.var["gene"][tied].isin(mdata["rna"].var_names).all()
    x = _lognorm(_dense(mdata, "rna"), 1e4)
    p = _lognorm(w, 1e3)
    genes = mdata["rna"].var_names.get_indexer(protein.var["gene"][tied])
    follows = _column_corr(p[:, tied], x[:, genes])
    rng = np.random.default_rng(0)
    random = _column_corr(
        p[:, rng.integers(10, size=200)], x[:, rng.integers(x.shape[1], size=200)]
    )
    assert follows.mean() > random.mean() + 0.1


def test_no_protein_modality_by_default(default):
    assert "protein" not in default[0].mod


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_cells": 0}, "n_cells"),
        ({"n_genes": 2.5}, "n_genes"),
        ({"n_proteins": -1}, "n_proteins"),
        ({"n_links": -3}, "n_links"),
        ({"atac_capture": 1.5}, "atac_capture"),
        ({"batch_effect": -0.1}, "batch_effect"),
        ({"rna_library_size": 0}, "rna_library_size"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate_multiome(**{"n_cells": 20, "n_genes": 20, "n_peaks": 40, **kwargs})


def test_registers_and_trains_a_tiny_model():
    mdata, _ = simulate_multiome(n_cells=120, n_genes=50, n_peaks=100, n_proteins=6, seed=1)
    SCDX.setup_mudata(mdata, labels_key="cell_type", batch_key="batch")
    scvi.settings.seed = 0
    model = SCDX(mdata, **TINY)
    model.train(max_epochs=1, max_steps_diffusion=5, **QUIET)
    assert model.is_trained
    assert model.summary_stats["n_labels"] == 6
    assert model.summary_stats["n_batch"] == 2
