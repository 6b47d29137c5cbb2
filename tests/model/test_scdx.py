from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from scdx_scvi import SCDX
from scdx_scvi.module import ATLAS_PEAKS, atlas_widths, default_max_epochs

COMBINATIONS = [
    ("rna", "atac"),
    ("rna", "protein"),
    ("atac", "protein"),
    ("rna", "atac", "protein"),
]
GETTERS = {
    "rna": "get_normalized_expression",
    "atac": "get_normalized_accessibility",
    "protein": "get_normalized_protein",
}


def _widths(mlp) -> list[int]:
    return [layer.fc_layers[0][0].out_features for layer in mlp.hidden]


def _trained(mdata, kwargs, accelerator, **model_kwargs):
    SCDX.setup_mudata(mdata, **kwargs)
    model = SCDX(mdata, architecture="small", **model_kwargs)
    model.train_autoencoder(max_epochs=2, accelerator=accelerator, enable_progress_bar=False)
    return model


@pytest.mark.parametrize("modalities", COMBINATIONS)
@pytest.mark.parametrize("sparse", [False, True])
def test_scdx_trains_and_every_getter_works(
    modalities, sparse, make_mudata, setup_kwargs, accelerator
):
    mdata = make_mudata(modalities, sparse=sparse)
    model = _trained(mdata, setup_kwargs(modalities), accelerator)

    assert model.is_trained
    assert model.modalities == modalities
    for m in modalities:
        for split in ("train", "validation"):
            assert f"reconstruction_loss_{m}_{split}" in model.history
            assert np.isfinite(
                model.history[f"reconstruction_loss_{m}_{split}"].to_numpy(dtype=float)
            ).all()

    n_latent = {m: model.module.n_latent[m] for m in modalities}
    joint = model.get_latent_representation()
    assert joint.shape == (mdata.n_obs, sum(n_latent.values()))
    offset = 0
    for m in modalities:
        z = model.get_latent_representation(modality=m)
        assert z.shape == (mdata.n_obs, n_latent[m])
        np.testing.assert_allclose(joint[:, offset : offset + n_latent[m]], z, rtol=1e-5)
        offset += n_latent[m]

    for m in modalities:
        mod = setup_kwargs(modalities)["modalities"][f"{m}_layer"]
        values = getattr(model, GETTERS[m])()
        assert isinstance(values, pd.DataFrame)
        assert values.shape == (mdata.n_obs, mdata[mod].n_vars)
        assert list(values.columns) == list(mdata[mod].var_names)
        assert list(values.index) == list(mdata.obs_names)
        assert np.isfinite(values.to_numpy(dtype=float)).all()
        if m == "atac":
            assert ((values.to_numpy() > 0) & (values.to_numpy() < 1)).all()
        else:
            np.testing.assert_allclose(values.sum(axis=1), 1.0, rtol=1e-4)

    errors = model.get_reconstruction_error()
    assert set(errors) == {f"reconstruction_loss_{m}" for m in modalities}
    assert all(np.isfinite(v) and v > 0 for v in errors.values())
    normalized = model.get_normalized_modalities(library_size=1e4)
    assert set(normalized) == set(modalities)


def test_getter_options(make_mudata, setup_kwargs, accelerator):
    mods = ("rna", "atac")
    mdata = make_mudata(mods)
    model = _trained(mdata, setup_kwargs(mods), accelerator)

    genes = list(mdata["rna"].var_names[[5, 2]])
    subset = model.get_normalized_expression(indices=[3, 0, 7], gene_list=genes)
    full = model.get_normalized_expression()
    assert list(subset.columns) == genes
    assert list(subset.index) == list(mdata.obs_names[[3, 0, 7]])
    np.testing.assert_allclose(subset.to_numpy(), full.loc[subset.index, genes].to_numpy(), 1e-5)

    scaled = model.get_normalized_expression(library_size=1e4, return_numpy=True)
    np.testing.assert_allclose(scaled, 1e4 * full.to_numpy(), rtol=1e-4)
    observed = model.get_normalized_expression(library_size="observed", return_numpy=True)
    totals = np.asarray(mdata["rna"].X.sum(axis=1)).ravel()
    np.testing.assert_allclose(observed.sum(axis=1), totals, rtol=1e-4)

    as_batch_0 = model.get_normalized_expression(transform_batch="batch_0", return_numpy=True)
    as_batch_1 = model.get_normalized_expression(transform_batch="batch_1", return_numpy=True)
    assert not np.allclose(as_batch_0, as_batch_1)
    with pytest.raises(ValueError, match="not a valid batch"):
        model.get_normalized_expression(transform_batch="batch_9")

    peaks = list(mdata["accessibility"].var_names[:4])
    assert model.get_normalized_accessibility(region_list=peaks).shape == (mdata.n_obs, 4)
    dense = model.get_normalized_accessibility(region_list=peaks, batch_size=7)
    thin = model.get_normalized_accessibility(
        region_list=peaks, batch_size=7, threshold=float(np.median(dense))
    )
    assert isinstance(thin.dtypes.iloc[0], pd.SparseDtype) and thin.index.equals(dense.index)
    kept = dense.to_numpy() >= float(np.median(dense))
    np.testing.assert_array_equal(thin.sparse.to_dense().to_numpy(), np.where(kept, dense, 0))
    as_csr = model.get_normalized_accessibility(threshold=0.5, return_numpy=True)
    assert sparse.isspmatrix_csr(as_csr) and as_csr.shape == (
        mdata.n_obs,
        mdata["accessibility"].n_vars,
    )
    with pytest.raises(ValueError, match="not in the model"):
        model.get_normalized_accessibility(region_list=["no_such_peak"])
    with pytest.raises(ValueError, match="Unknown modality"):
        model.get_latent_representation(modality="methylation")
    with pytest.raises(ValueError, match="no 'protein' modality"):
        model.get_normalized_protein()
    with pytest.raises(ValueError, match="not both"):
        model.get_latent_representation(mdata, mdata=mdata)
    np.testing.assert_allclose(
        model.get_latent_representation(mdata=mdata), model.get_latent_representation(), 1e-6
    )


def test_transform_batch_needs_a_batch_model(make_mudata, setup_kwargs, accelerator):
    mods = ("rna", "atac")
    mdata = make_mudata(mods)
    model = _trained(mdata, setup_kwargs(mods), accelerator, use_batch=False)
    assert not model.module.use_batch
    with pytest.raises(ValueError, match="conditioned on the batch"):
        model.get_normalized_expression(transform_batch="batch_0")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("encoder_input", "log1p"),
        ("reconstruction_weights", "per_feature"),
        ("reconstruction_weights", {"rna": 2.0, "atac": 0.5}),
        ("norm", "layernorm"),
        ("norm", "batchnorm"),
        ("n_latent", 8),
        ("n_hidden", {"rna": [32], "atac": [48, 16]}),
        ("dropout_rate", 0.1),
    ],
)
def test_model_options(option, value, make_mudata, setup_kwargs, accelerator):
    mods = ("rna", "atac")
    mdata = make_mudata(mods)
    model = _trained(mdata, setup_kwargs(mods), accelerator, **{option: value})
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()
    assert np.isfinite(model.get_latent_representation()).all()
    if option == "n_latent":
        assert model.get_latent_representation(modality="rna").shape[1] == 8
    if option == "n_hidden":
        assert _widths(model.module.encoders["atac"]) == [48, 16]


def test_presets_follow_the_reference(make_mudata, setup_kwargs):
    mods = ("rna", "atac")
    mdata = make_mudata(mods)
    SCDX.setup_mudata(mdata, **setup_kwargs(mods))
    default = SCDX(mdata, configuration="reference")
    assert _widths(default.module.encoders["atac"]) == [1024, 512]
    assert default.module.n_latent == {"rna": 100, "atac": 100}
    first_block = default.module.encoders["rna"].hidden[0].fc_layers[0]
    assert isinstance(first_block[1], torch.nn.BatchNorm1d)
    large = SCDX(mdata, configuration="reference", architecture="large")
    assert large.module.n_latent == {"rna": 150, "atac": 200}
    assert isinstance(large.module.encoders["rna"].hidden[0].fc_layers[0][2], torch.nn.LayerNorm)
    assert _widths(large.module.decoders["rna"]) == [512, 1024]
    # the measured configuration shares the preset's largest latent size
    assert SCDX(mdata, architecture="large").module.n_latent == {"rna": 200, "atac": 200}
    assert SCDX(mdata).module.n_latent == {"rna": 64, "atac": 64}
    with pytest.raises(ValueError, match="architecture must be one of"):
        SCDX(mdata, architecture="huge")
    with pytest.raises(ValueError, match="configuration must be one of"):
        SCDX(mdata, configuration="paper")
    with pytest.raises(ValueError, match="generation_depth must be one of"):
        SCDX(mdata, generation_depth="type")


def test_atlas_widths_bound_the_peak_sized_layers(monkeypatch, make_mudata, setup_kwargs):
    assert atlas_widths((512, 256), 25_734) == (512, 256)
    assert atlas_widths((512, 256), ATLAS_PEAKS) == (512, 256)
    assert atlas_widths((512, 256), 200_000) == (256, 256)
    assert atlas_widths((512, 256), 150_000) == (320, 256)
    assert atlas_widths((1024, 512), 300_000) == (320, 320)
    assert atlas_widths((512, 256), 10**7) == (64, 64)
    for n_peaks in (100_001, 150_000, 200_000, 10**6):
        first = atlas_widths((512, 256), n_peaks)[0]
        assert first * n_peaks <= 512 * ATLAS_PEAKS or first == 64
    # the model narrows the ATAC widths of "scdx" beyond the bound (80 synthetic peaks here),
    # not those of the reference, nor widths given explicitly
    monkeypatch.setattr("scdx_scvi.module._presets.ATLAS_PEAKS", 40)
    mods = ("rna", "atac")
    mdata = make_mudata(mods)
    SCDX.setup_mudata(mdata, **setup_kwargs(mods))
    assert _widths(SCDX(mdata).module.encoders["atac"]) == [256, 256]
    assert _widths(SCDX(mdata).module.decoders["atac"]) == [256, 256]
    assert _widths(SCDX(mdata).module.encoders["rna"]) == [300, 150]
    assert _widths(SCDX(mdata, configuration="reference").module.encoders["atac"]) == [1024, 512]
    given = SCDX(mdata, n_hidden={"atac": (512, 256)})
    assert _widths(given.module.encoders["atac"]) == [512, 256]
    assert _widths(SCDX(mdata, atlas_widths=False).module.encoders["atac"]) == [512, 256]


def test_reference_configuration_sets_every_reference_value(make_mudata, setup_kwargs):
    """Every value of the reference implementation (method.md section 8.1), by one switch."""
    mods = ("rna", "atac")
    mdata = make_mudata(mods)
    SCDX.setup_mudata(mdata, **setup_kwargs(mods))
    model = SCDX(mdata, configuration="reference")
    module, diffusion = model.module, model.module.diffusion
    assert model.options["architecture"] == "default" and model.options["n_channels"] == 128
    assert model.options["atlas_widths"] is False
    assert model.training_budget == {
        "max_epochs": 300, "early_stopping": False, "max_steps_diffusion": 800_000,
        "diffusion_lr": 1e-4, "diffusion_early_stopping": False, "dispersion_lr": None,
    }  # fmt: skip
    assert not module.use_batch
    assert module.reconstruction_weights == {"rna": 1.0, "atac": 1.0}
    assert module.cross_reconstruction == 0 and module.latent_agreement == 0
    assert module.likelihoods["rna"].encoder_input == "counts"
    assert diffusion.latent_scaling == "scalar" and diffusion.prediction == "epsilon"
    assert diffusion.label_dropout == 0 and diffusion.condition_prob == 0
    assert diffusion.condition_noise == 0
    assert not diffusion.gaussian_residual
    assert diffusion.denoiser.n_channels == 128 and diffusion.denoiser.cross_attention_type == "dca"
    assert len(diffusion.denoiser.source_input) == 0
    assert module.generation_depth == "label"
    assert model.options["protein_likelihood"] == "nb"
    assert SCDX(mdata).module.generation_depth == "training_cells"
    # an explicit option still overrides the configuration
    model = SCDX(mdata, configuration="reference", n_channels=32)
    assert model.module.diffusion.denoiser.n_channels == model.options["n_channels"] == 32
    # the default configuration's epochs follow the number of cells
    budget = SCDX(mdata).training_budget
    assert budget["max_epochs"] == default_max_epochs(mdata.n_obs) and budget["early_stopping"]
    assert not budget["diffusion_early_stopping"] and budget["max_steps_diffusion"] == 4000


def test_train_defaults_follow_the_configuration(make_mudata, setup_kwargs, accelerator):
    mods = ("rna", "atac")
    mdata = make_mudata(mods)
    model = _trained(mdata, setup_kwargs(mods), accelerator)
    optimizer = model.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == 5e-4  # the "small" preset
    assert optimizer.defaults["weight_decay"] == 1e-4
    # the dispersions in a group of their own: the configuration's rate, no weight decay
    network, dispersions = optimizer.param_groups
    assert dispersions["lr"] == 0.1 and dispersions["weight_decay"] == 0.0
    assert {id(p) for p in dispersions["params"]} == {
        id(p) for p in model.module.dispersion_parameters()
    }
    assert network["lr"] == 5e-4
    assert model.trainer.gradient_clip_val == 1.0
    assert len(model.train_indices) == pytest.approx(0.9 * mdata.n_obs, abs=2)


def test_early_stopping_stops_on_validation_reconstruction(make_mudata, setup_kwargs, accelerator):
    mods = ("rna", "protein")
    mdata = make_mudata(mods)
    SCDX.setup_mudata(mdata, **setup_kwargs(mods))
    model = SCDX(mdata, architecture="small")
    # Learning rates of 0 cannot improve the validation loss: patience 2 stops after 3 epochs.
    model.train_autoencoder(
        max_epochs=50, lr=0.0, dispersion_lr=0.0, early_stopping_patience=2,
        enable_progress_bar=False, accelerator=accelerator,
    )  # fmt: skip
    assert len(model.history["reconstruction_loss_validation"]) == 3


def test_retraining_after_freezing_updates_the_autoencoder(make_mudata, setup_kwargs, accelerator):
    mods = ("rna", "atac")
    mdata = make_mudata(mods)
    model = _trained(mdata, setup_kwargs(mods), accelerator)
    model.module.requires_grad_(False)
    before = model.get_latent_representation()
    model.train_autoencoder(max_epochs=1, accelerator=accelerator, enable_progress_bar=False)
    assert not np.allclose(before, model.get_latent_representation())


def test_getters_on_new_mudata_transfer_the_setup(make_mudata, setup_kwargs, accelerator):
    mods = ("rna", "atac")
    mdata = make_mudata(mods)
    model = _trained(mdata, setup_kwargs(mods), accelerator)
    other = mdata[:50].copy()
    for key in ("_scvi_uuid", "_scvi_manager_uuid"):
        other.uns.pop(key, None)
    full = model.get_latent_representation()
    np.testing.assert_allclose(model.get_latent_representation(other), full[:50], atol=1e-5)
    view = mdata[10:20]
    np.testing.assert_allclose(model.get_latent_representation(view), full[10:20], atol=1e-5)
    assert view.is_view


def test_view_anndata_setup_and_repr(make_mudata, setup_kwargs, capsys):
    mods = ("rna", "atac", "protein")
    mdata = make_mudata(mods)
    SCDX.setup_mudata(mdata, **setup_kwargs(mods))
    model = SCDX(mdata)
    model.view_anndata_setup()
    assert "accessibility" in capsys.readouterr().out
    repr(model)  # scvi-tools prints the summary
    assert "modalities ['rna', 'atac', 'protein']" in capsys.readouterr().out.replace("\n", " ")
    with pytest.raises(NotImplementedError, match="setup_mudata"):
        SCDX.setup_anndata(mdata["rna"])


def test_docstring_templates_are_rendered():
    for method in (
        SCDX.setup_mudata,
        SCDX.train_autoencoder,
        SCDX.get_latent_representation,
        SCDX.get_normalized_expression,
        SCDX.get_normalized_accessibility,
        SCDX.get_normalized_protein,
        SCDX.get_normalized_modalities,
        SCDX.get_reconstruction_error,
    ):
        assert method.__doc__ and "%(" not in method.__doc__
    assert "accelerator" in SCDX.train_autoencoder.__doc__
    assert "MuData" in SCDX.setup_mudata.__doc__


def test_posterior_predictive_sample_draws_counts_at_the_observed_depth(
    make_mudata, setup_kwargs, accelerator
):
    mods = ("rna", "atac", "protein")
    mdata = make_mudata(mods)
    model = _trained(mdata, setup_kwargs(mods), accelerator)
    state = torch.random.get_rng_state()
    draws = model.posterior_predictive_sample(seed=3, batch_size=16)
    assert torch.equal(torch.random.get_rng_state(), state)  # the user's RNG is left alone
    again = model.posterior_predictive_sample(seed=3, indices=np.arange(mdata.n_obs), batch_size=16)
    for m in mods:
        x = draws[m]
        assert x.shape == (mdata.n_obs, mdata[model.modality_names[m]].n_vars)
        assert x.format == "csr"
        assert np.all(x.data == np.round(x.data)) and x.data.min() >= 0
        assert (x != again[m]).nnz == 0  # same seed and batch_size, same draws
    assert draws["atac"].max() == 1
    # the NB mean is the decoder's proportions times each cell's observed library size
    observed = np.asarray(mdata[model.modality_names["rna"]].X.sum(axis=1)).ravel()
    drawn = np.asarray(draws["rna"].sum(axis=1)).ravel()
    assert np.corrcoef(observed, drawn)[0, 1] > 0.5
    assert model.posterior_predictive_sample(indices=[0, 2])["rna"].shape[0] == 2


def test_protein_mixture_likelihood_trains_translates_generates_and_reloads(tmp_path):
    """The default protein likelihood through every path that decodes protein."""
    from helpers import train_tiny

    from scdx_scvi.module import CountMixtureLikelihood

    model, mdata = train_tiny(("rna", "protein"))  # the default protein likelihood
    assert isinstance(model.module.likelihoods["protein"], CountMixtureLikelihood)
    assert model.options["protein_likelihood"] == "nb_mixture"
    reference = SCDX(mdata, configuration="reference")
    assert type(reference.module.likelihoods["protein"]).__name__ == "CountLikelihood"
    n_proteins = mdata["protein_expression"].n_vars
    protein = model.get_normalized_protein(library_size="observed", return_numpy=True)
    totals = np.asarray(mdata["protein_expression"].X.sum(axis=1)).ravel()
    np.testing.assert_allclose(protein.sum(axis=1), totals, rtol=1e-4)
    draws = model.posterior_predictive_sample(indices=[0, 1, 2], seed=0)
    assert draws["protein"].shape == (3, n_proteins)
    translated = model.get_translated_modality(mdata["rna"], "rna", "protein", seed=0)
    assert translated.shape == (mdata.n_obs, n_proteins)
    assert np.isfinite(
        np.asarray(translated.X.todense() if hasattr(translated.X, "todense") else translated.X)
    ).all()
    cells = model.generate(labels={"label_0": 5}, seed=0)
    assert cells["protein_expression"].shape == (5, n_proteins)
    model.save(tmp_path / "model")
    loaded = SCDX.load(tmp_path / "model", adata=mdata, accelerator="cpu")
    np.testing.assert_allclose(
        loaded.get_normalized_protein(library_size="observed", return_numpy=True),
        protein,
        rtol=1e-5,
    )
