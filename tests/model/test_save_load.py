from __future__ import annotations

import numpy as np
import pytest

from scdx_scvi import SCDX


@pytest.fixture
def trained(make_mudata, setup_kwargs, accelerator):
    mods = ("rna", "atac", "protein")
    mdata = make_mudata(mods)
    SCDX.setup_mudata(mdata, **setup_kwargs(mods))
    model = SCDX(mdata, architecture="small", encoder_input="log1p")
    model.train_autoencoder(max_epochs=2, accelerator=accelerator, enable_progress_bar=False)
    return model, mdata


def _fresh_copy(mdata):
    copy = mdata.copy()
    for key in ("_scvi_uuid", "_scvi_manager_uuid"):
        copy.uns.pop(key, None)
    copy.obs = copy.obs.drop(columns=[c for c in copy.obs if c.startswith("_scvi")])
    return copy


@pytest.mark.parametrize("save_anndata", [True, False])
def test_save_load_gives_identical_outputs(trained, save_anndata, tmp_path):
    model, mdata = trained
    model.save(tmp_path / "model", save_anndata=save_anndata)
    if save_anndata:
        loaded = SCDX.load(tmp_path / "model", accelerator="cpu")
        assert loaded.adata.n_obs == mdata.n_obs
    else:
        loaded = SCDX.load(tmp_path / "model", adata=_fresh_copy(mdata), accelerator="cpu")

    np.testing.assert_array_equal(
        loaded.get_latent_representation(mdata), model.get_latent_representation(mdata)
    )
    np.testing.assert_array_equal(
        loaded.get_normalized_accessibility(mdata, return_numpy=True),
        model.get_normalized_accessibility(mdata, return_numpy=True),
    )
    assert loaded.is_trained
    assert loaded.module.n_latent == model.module.n_latent
    assert loaded.module.likelihoods["rna"].encoder_input == "log1p"
    for key in ("batch", "labels"):
        original = model.adata_manager.get_state_registry(key).categorical_mapping
        restored = loaded.adata_manager.get_state_registry(key).categorical_mapping
        np.testing.assert_array_equal(original, restored)
    for m, names in model.feature_names_.items():
        np.testing.assert_array_equal(loaded.feature_names_[m], names)
    assert loaded.history["train_loss"].shape == model.history["train_loss"].shape


def test_load_without_data_then_getters_on_new_mudata(trained, tmp_path):
    model, mdata = trained
    model.save(tmp_path / "model")
    loaded = SCDX.load(tmp_path / "model", accelerator="cpu")
    np.testing.assert_array_equal(
        loaded.get_latent_representation(_fresh_copy(mdata)), model.get_latent_representation()
    )


def test_load_keeps_the_batch_mapping_of_training(trained, tmp_path):
    """Category codes come from the saved registry, not from the new data's category order."""
    model, mdata = trained
    model.save(tmp_path / "model")
    other = _fresh_copy(mdata)
    other.obs["batch"] = (
        other.obs["batch"].astype("category").cat.reorder_categories(["batch_1", "batch_0"])
    )
    loaded = SCDX.load(tmp_path / "model", adata=other, accelerator="cpu")
    np.testing.assert_array_equal(
        loaded.get_latent_representation(other), model.get_latent_representation(mdata)
    )


def test_load_onto_other_features_fails_clearly(trained, tmp_path):
    model, mdata = trained
    model.save(tmp_path / "model")

    renamed = _fresh_copy(mdata)
    names = renamed["rna"].var_names.tolist()
    names[3] = "not_a_gene"
    renamed["rna"].var_names = names
    with pytest.raises(ValueError, match="gene 3 is 'not_a_gene'"):
        SCDX.load(tmp_path / "model", adata=renamed, accelerator="cpu")

    shuffled = _fresh_copy(mdata)
    shuffled.mod["accessibility"] = shuffled["accessibility"][:, ::-1].copy()
    with pytest.raises(ValueError, match="different order"):
        SCDX.load(tmp_path / "model", adata=shuffled, accelerator="cpu")

    fewer = _fresh_copy(mdata)
    fewer.mod["protein_expression"] = fewer["protein_expression"][:, :5].copy()
    with pytest.raises(ValueError, match="Number of vars|20 proteins"):
        SCDX.load(tmp_path / "model", adata=fewer, accelerator="cpu")

    with pytest.raises(ValueError, match="gene 3 is 'not_a_gene'"):
        model.get_latent_representation(renamed)
