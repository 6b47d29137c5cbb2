"""Training and translating from a backed .h5mu: the counts stay on disk."""

from __future__ import annotations

import mudata as md
import numpy as np
import pytest
import torch

from scdx_scvi import SCDX
from scdx_scvi.datasets import simulate_multiome
from scdx_scvi.model._rows import RowBuffer

QUIET = {"enable_progress_bar": False, "accelerator": "cpu"}


def test_train_and_translate_backed(tmp_path):
    mdata, _ = simulate_multiome(n_cells=160, n_genes=40, n_peaks=120, seed=1)
    mdata.write(tmp_path / "data.h5mu")
    backed = md.read_h5mu(tmp_path / "data.h5mu", backed="r")
    SCDX.setup_mudata(backed, rna_layer="counts", atac_layer="counts", labels_key="cell_type")
    model = SCDX(backed, architecture="small", n_channels=16)
    model.train(max_epochs=2, max_steps_diffusion=10, **QUIET)
    assert all(adata.isbacked for adata in backed.mod.values())
    assert np.isfinite(model.history["reconstruction_loss_train"].to_numpy(float)).all()

    rows = [150, 3, 3, 40]
    kwargs = {"source_modality": "atac", "target_modality": "rna", "indices": rows,
              "return_type": "numpy", "seed": 0}  # fmt: skip
    from_disk = model.get_translated_modality(backed, **kwargs)
    in_memory = model.get_translated_modality(mdata, **kwargs)
    assert from_disk.shape == (len(rows), 40)
    np.testing.assert_allclose(from_disk, in_memory, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_disk[1], from_disk[2], rtol=1e-5, atol=1e-6)

    model.save(tmp_path / "model")
    loaded = SCDX.load(tmp_path / "model", adata=backed)
    np.testing.assert_allclose(
        loaded.get_latent_representation(), model.get_latent_representation(), rtol=1e-5,
        atol=1e-6,
    )  # fmt: skip


def test_row_buffer_writes_minibatches_in_place():
    rows = RowBuffer(5)
    rows.write({"z": torch.ones(2, 3), ("mask", "rna"): torch.tensor([True, False])})
    with pytest.raises(RuntimeError, match="2 of 5 rows"):
        rows.result()
    rows.write({"z": torch.zeros(3, 3), ("mask", "rna"): torch.tensor([True, True, False])})
    out = rows.result()
    assert out["z"].shape == (5, 3) and out["z"][:2].eq(1).all() and out["z"][2:].eq(0).all()
    assert out["mask", "rna"].dtype == torch.bool
    assert out["mask", "rna"].tolist() == [True, False, True, True, False]


@pytest.mark.parametrize(
    ("indices", "error", "match"),
    [
        ([0, 500], ValueError, "outside"),
        ([-1], ValueError, "outside"),
        ([0.5], TypeError, "integer"),
    ],
)
def test_translation_indices_are_checked(tmp_path, indices, error, match):
    mdata, _ = simulate_multiome(n_cells=60, n_genes=20, n_peaks=40, seed=2)
    SCDX.setup_mudata(mdata, rna_layer="counts", atac_layer="counts")
    model = SCDX(mdata, architecture="small", n_channels=16)
    model.train(max_epochs=1, max_steps_diffusion=2, **QUIET)
    with pytest.raises(error, match=match):
        model.get_translated_modality(indices=indices)
