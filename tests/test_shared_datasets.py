"""End-to-end runs on the real paired datasets in ../shared/data."""

from __future__ import annotations

import numpy as np
import pytest

from scdx_scvi import SCDX
from scdx_scvi.metrics import reconstruction_scores

SMALL_SETS = {
    "neurips2021_bmmc_multiome_starter": ("rna", "atac"),
    "neurips2021_bmmc_cite_starter": ("rna", "protein"),
}


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", list(SMALL_SETS))
def test_train_getters_and_reload_on_starter_sets(name, shared_mudata, accelerator, tmp_path):
    mdata = shared_mudata(name)
    SCDX.setup_mudata(mdata, labels_key="cell_type", batch_key="batch")
    model = SCDX(mdata, architecture="small")
    model.train_autoencoder(max_epochs=20, accelerator=accelerator, enable_progress_bar=False)
    assert model.modalities == SMALL_SETS[name]
    assert model.summary_stats.n_labels == mdata.obs["cell_type"].nunique()

    predictions = model.get_normalized_modalities(library_size=1e4)
    observed = {m: mdata[m].X for m in model.modalities}
    scores = reconstruction_scores(observed, predictions)
    assert all(np.isfinite(v) for v in scores.values())
    # Twenty epochs already beat chance on the training cells.
    assert scores["rna_pearson_per_gene"] > 0.05
    if "atac_auroc_per_peak" in scores:
        assert scores["atac_auroc_per_peak"] > 0.6
    else:
        assert scores["protein_pearson_per_protein"] > 0.1

    model.save(tmp_path / "model", save_anndata=True)
    loaded = SCDX.load(tmp_path / "model", accelerator="cpu")
    np.testing.assert_array_equal(
        loaded.get_latent_representation(), model.get_latent_representation()
    )


def test_main_benchmark_set_registers_and_trains(shared_mudata, accelerator):
    mdata = shared_mudata("snareseq_mop")
    SCDX.setup_mudata(mdata, labels_key="cell_type", batch_key="batch")
    model = SCDX(mdata, architecture="small")
    assert model.module.n_features == {"rna": 1677, "atac": 25734}
    model.train_autoencoder(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        accelerator=accelerator,
        enable_progress_bar=False,
    )
    z = model.get_latent_representation(indices=np.arange(300), modality="atac")
    assert z.shape == (300, 64)
    assert np.isfinite(z).all()
