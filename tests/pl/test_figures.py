from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from scdx_scvi.pl import feature_scatter, umap_real_vs_generated


def _clouds(seed: int = 0):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(60, 5))
    return {"generated": (real, real + 0.1), "far": (real, rng.normal(size=(40, 5)) + 8)}


def test_umap_has_a_panel_per_set_and_one_by_cell_type(tmp_path):
    sets = _clouds()
    labels = {"real": ["a"] * 30 + ["b"] * 30, "generated": ["a"] * 60}
    fig = umap_real_vs_generated(sets, labels, title="RNA")
    axes = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title() for ax in axes]
    assert titles == [
        "RNA: real vs generated",
        "RNA: real vs far",
        "RNA: cell types, real and generated",
    ]
    # every cell is drawn: the pooled real and compared cells of each panel
    counts = [sum(len(c.get_offsets()) for c in ax.collections) for ax in axes]
    assert counts == [120, 100, 120]
    fig.savefig(tmp_path / "umap.png")
    image = matplotlib.image.imread(tmp_path / "umap.png")
    assert image[..., :3].std() > 0.05


def test_umap_without_labels_and_bad_input():
    fig = umap_real_vs_generated(dict(list(_clouds().items())[:1]))
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["real vs generated"]
    with pytest.raises(ValueError, match="at least one set"):
        umap_real_vs_generated({})


def test_umap_of_more_than_4096_cells():
    """scanpy switches to approximate neighbours from 4,096 cells on; the figure must still draw."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(1100, 3))
    fig = umap_real_vs_generated({"real training cells": (real, rng.normal(size=(3000, 3)))})
    (ax,) = [ax for ax in fig.axes if ax.get_title()]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 4100


def test_feature_scatter_counts_the_features_where_the_reference_wins():
    scores = {
        "SCDX": np.array([0.9, 0.2, 0.5, np.nan]),
        "kNN": np.array([0.1, 0.3, 0.4, 0.2]),
        "ridge": np.array([0.95, 0.25, 0.6, 0.1]),
    }
    fig = feature_scatter(scores, "SCDX", "Pearson per gene", title="ATAC -> RNA")
    assert [ax.get_title() for ax in fig.axes] == [
        "ATAC -> RNA: SCDX higher on 2 of 3",
        "ATAC -> RNA: SCDX higher on 0 of 3",
    ]
    assert fig.axes[0].get_xlabel() == "kNN: Pearson per gene"
    with pytest.raises(ValueError, match="`reference` 'MultiVI'"):
        feature_scatter(scores, "MultiVI", "AUROC")
