from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from anndata import AnnData
from helpers import SYNTHETIC_NAMES, synthetic_mudata, train_tiny
from mudata import MuData
from scipy import sparse

from scdx_scvi import SCDX
from scdx_scvi.data import pad_mosaic
from scdx_scvi.diffusion import (
    SAMPLERS,
    GuidanceSampler,
    ReplacementSampler,
    sample_noise,
    with_labels,
)
from scdx_scvi.model._condition_timesteps import fit_condition_timesteps

FAST = {"sampler": "dpm++2m", "n_steps": 4, "seed": 0}


@pytest.fixture(scope="module")
def trained():
    return train_tiny(("rna", "atac"))


@pytest.fixture(scope="module")
def trained3():
    return train_tiny(("rna", "atac", "protein"))


def _only(mdata: MuData, m: str) -> AnnData:
    """The user's case: an AnnData holding one modality, and nothing of the model's setup."""
    adata = mdata[SYNTHETIC_NAMES[m]]
    return AnnData(adata.X.copy(), obs=mdata.obs[["labels"]].copy(), var=adata.var[[]].copy())


def test_rna_only_anndata_in_atac_anndata_out(trained):
    model, mdata = trained
    query = _only(mdata, "rna")
    before = query.copy()
    atac = model.get_translated_modality(query, "rna", "atac", **FAST)
    assert isinstance(atac, AnnData)
    assert atac.obs_names.equals(query.obs_names)
    assert list(atac.obs.columns) == ["labels"]
    assert list(atac.var_names) == list(mdata["accessibility"].var_names)
    assert atac.X.dtype == np.float32
    assert ((atac.X >= 0) & (atac.X <= 1)).all()  # accessibility probabilities
    assert atac.uns["scdx_translation"]["method"] == "learned"
    assert not atac.layers
    # the query is untouched
    assert query.obs.equals(before.obs)
    np.testing.assert_array_equal(query.X, before.X)


@pytest.mark.parametrize(
    ("source", "target"),
    [("rna", "atac"), ("atac", "rna"), ("rna", "protein"), ("protein", "rna"),
     ("atac", "protein"), ("protein", "atac")],
)  # fmt: skip
def test_every_pair_and_direction(trained3, source, target):
    model, mdata = trained3
    out = model.get_translated_modality(_only(mdata, source), source, target, **FAST)
    assert out.shape == (mdata.n_obs, mdata[SYNTHETIC_NAMES[target]].n_vars)
    assert np.isfinite(out.X).all() and (out.X >= 0).all()
    if target != "atac":  # the expected counts per 10k sum to 10k
        counts = model.get_translated_modality(
            _only(mdata, source), source, target, expected="counts", **FAST
        )
        np.testing.assert_allclose(counts.X.sum(1), 1e4, rtol=1e-3)
        assert (out.X.sum(1) < 1e4).all()


def test_subset_of_modalities_to_the_rest(trained3):
    model, mdata = trained3
    out = model.get_translated_modality(mdata, ["rna", "atac"], None, **FAST)
    assert isinstance(out, AnnData)
    assert out.uns["scdx_translation"]["target_modality"] == "protein"
    both = model.get_translated_modality(mdata, "rna", None, return_type="numpy", **FAST)
    assert set(both) == {"atac", "protein"}
    as_mudata = model.get_translated_modality(mdata, "rna", None, **FAST)
    assert isinstance(as_mudata, MuData)
    assert set(as_mudata.mod) == {"accessibility", "protein_expression"}
    # the modality can be named as in mdata.mod
    np.testing.assert_array_equal(
        model.get_translated_modality(mdata, "rna", "protein_expression", **FAST).X,
        model.get_translated_modality(mdata, "rna", "protein", **FAST).X,
    )


@pytest.mark.parametrize("method", ["learned", "replacement", "guidance"])
def test_methods_are_reproducible_with_a_seed(trained, method):
    model, mdata = trained
    query = _only(mdata, "atac")
    kwargs = {"method": method, "n_steps": 5, "batch_size": 64, "sampler": "dpm++2m"}
    first = model.get_translated_modality(query, "atac", "rna", seed=3, **kwargs)
    again = model.get_translated_modality(query, "atac", "rna", seed=3, **kwargs)
    other = model.get_translated_modality(query, "atac", "rna", seed=4, **kwargs)
    np.testing.assert_array_equal(first.X, again.X)
    assert not np.allclose(first.X, other.X)
    assert first.uns["scdx_translation"]["sampler"] == (
        "dpm++2m" if method == "learned" else "ddpm"
    )


def test_mean_sampler_is_one_deterministic_evaluation(trained):
    model, mdata = trained
    query = _only(mdata, "rna")
    first = model.get_translated_modality(query, "rna", "atac", seed=0)  # the default
    other = model.get_translated_modality(query, "rna", "atac", sampler="mean", seed=1)
    np.testing.assert_array_equal(first.X, other.X)
    settings = first.uns["scdx_translation"]
    assert settings["sampler"] == "mean" and settings["n_steps"] == 1
    # per cell: reordering the cells reorders the estimates, which differ between cells
    order = np.random.default_rng(0).permutation(query.n_obs)
    moved = model.get_translated_modality(query[order].copy(), "rna", "atac", sampler="mean")
    np.testing.assert_allclose(moved.X, first.X[order], rtol=1e-4, atol=1e-6)
    assert np.ptp(first.X, axis=0).max() > 0
    with pytest.raises(ValueError, match="n_samples"):
        model.get_translated_modality(query, "rna", "atac", n_samples=2)


def test_denoiser_dropout_trains_and_is_off_at_translation():
    model, mdata = train_tiny(("rna", "atac"), denoiser_kwargs={"dropout": 0.1})
    rates = {
        m.p for m in model.module.diffusion.denoiser.modules() if isinstance(m, torch.nn.Dropout)
    }
    assert rates == {0.1}
    query = _only(mdata, "rna")
    first = model.get_translated_modality(query, "rna", "atac", seed=0)
    again = model.get_translated_modality(query, "rna", "atac", seed=1)
    np.testing.assert_array_equal(first.X, again.X)  # no dropout in the EMA denoiser's pass
    assert not model.module.diffusion.training


def test_features_are_matched_by_name(trained, caplog):
    model, mdata = trained
    query = _only(mdata, "rna")
    reference = model.get_translated_modality(query, **FAST).X
    shuffled = query[:, np.random.default_rng(0).permutation(query.n_vars)].copy()
    np.testing.assert_array_equal(model.get_translated_modality(shuffled, **FAST).X, reference)
    # extra query genes are ignored, missing training genes are zeros and reported
    extra = AnnData(
        sparse.hstack([query.X, sparse.csr_matrix(np.ones((query.n_obs, 2)))]).tocsr(),
        obs=query.obs,
        var=pd.DataFrame(index=[*query.var_names, "new_1", "new_2"]),
    )
    np.testing.assert_array_equal(model.get_translated_modality(extra, **FAST).X, reference)
    partial = query[:, 5:].copy()
    with caplog.at_level(logging.WARNING, logger="scdx_scvi"):
        out = model.get_translated_modality(partial, **FAST)
    assert "5 of 60 rna features of the model are not in adata" in caplog.text
    padded = query.copy()
    padded.X[:, :5] = 0
    np.testing.assert_array_equal(out.X, model.get_translated_modality(padded, **FAST).X)


def test_layers_samples_and_counts(trained):
    model, mdata = trained
    query = _only(mdata, "rna")
    query.layers["counts"] = query.X.copy()
    query.X = query.X * 0.5  # not counts: the layer must be used
    out = model.get_translated_modality(
        query, layer="counts", n_samples=3, sample_counts=True, **FAST
    )
    assert set(out.layers) == {"variance", "counts"}
    assert (out.layers["variance"] >= 0).all() and out.layers["variance"].max() > 0
    counts = out.layers["counts"]
    assert sparse.issparse(counts) and set(np.unique(counts.toarray())) <= {0.0, 1.0}
    rna = model.get_translated_modality(
        _only(mdata, "atac"), "atac", "rna", sample_counts=True, **FAST
    )
    values = rna.layers["counts"].toarray()
    assert np.array_equal(values, np.round(values)) and values.sum() > 0


def test_threshold_gives_sparse_values_chunk_by_chunk(trained):
    model, mdata = trained
    query = _only(mdata, "rna")
    settings = {**FAST, "n_samples": 2, "batch_size": 7}  # several chunks
    dense = model.get_translated_modality(query, "rna", "atac", **settings)
    cut = float(np.median(dense.X))
    thin = model.get_translated_modality(query, "rna", "atac", threshold=cut, **settings)
    assert sparse.isspmatrix_csr(thin.X) and sparse.isspmatrix_csr(thin.layers["variance"])
    assert thin.X.dtype == np.float32 and 0 < thin.X.nnz < np.prod(thin.shape)
    kept = dense.X >= cut
    np.testing.assert_array_equal(thin.X.toarray(), np.where(kept, dense.X, 0))
    np.testing.assert_array_equal(
        thin.layers["variance"].toarray(), np.where(kept, dense.layers["variance"], 0)
    )
    assert thin.uns["scdx_translation"]["threshold"] == cut
    values = model.get_translated_modality(
        query, "rna", "atac", threshold=cut, return_type="numpy", **FAST
    )
    assert sparse.isspmatrix_csr(values) and values.shape == dense.shape
    with pytest.raises(ValueError, match="threshold"):
        model.get_translated_modality(query, threshold=-1.0)


def test_registered_cells_indices_and_labels(trained):
    model, mdata = trained
    out = model.get_translated_modality(indices=[3, 1, 4], labels="labels", **FAST)
    assert list(out.obs_names) == list(mdata.obs_names[[3, 1, 4]])
    assert not any(c.startswith("_scvi") for c in out.obs.columns)
    with pytest.raises(ValueError, match="Unknown label"):
        model.get_translated_modality(_only(mdata, "rna"), labels=["nope"] * mdata.n_obs)
    counts = model.module.label_counts.clone()
    model.module.label_counts[0] = 0  # a category of the column that no training cell had
    try:
        with pytest.raises(ValueError, match="No training cell has label"):
            model.get_translated_modality(indices=[0, 1], labels=["label_0", "label_1"], **FAST)
    finally:
        model.module.label_counts.copy_(counts)


def test_errors(trained, trained3):
    model, mdata = trained
    query = _only(mdata, "rna")
    with pytest.raises(ValueError, match="Unknown source_modality 'gex2'"):
        model.get_translated_modality(query, "gex2", "atac")
    with pytest.raises(ValueError, match="not trained on protein"):
        model.get_translated_modality(query, "rna", "protein")
    with pytest.raises(ValueError, match="both source and target"):
        model.get_translated_modality(query, "rna", "rna")
    with pytest.raises(ValueError, match="`method` must be one of"):
        model.get_translated_modality(query, method="magic")
    with pytest.raises(ValueError, match="An AnnData holds one modality"):
        trained3[0].get_translated_modality(query, ["rna", "atac"], None)
    unrelated = AnnData(query.X.copy(), var=pd.DataFrame(index=[f"g{i}" for i in range(60)]))
    with pytest.raises(ValueError, match="None of the 60 rna features"):
        model.get_translated_modality(unrelated)
    noninteger = query.copy()
    noninteger.X = noninteger.X * 0.5
    with pytest.raises(ValueError, match="non-integer"):
        model.get_translated_modality(noninteger)
    # a model whose diffusion was not trained
    fresh = SCDX(mdata, architecture="small", n_channels=16)
    with pytest.raises(RuntimeError, match="Train the diffusion first"):
        fresh.get_translated_modality(query)


def test_learned_method_needs_conditional_training():
    model, mdata = train_tiny(("rna", "atac"), condition_prob=0.0)
    with pytest.raises(ValueError, match="condition_prob=0"):
        model.get_translated_modality(_only(mdata, "rna"))
    out = model.get_translated_modality(_only(mdata, "rna"), method="replacement", **FAST)
    assert out.shape == (mdata.n_obs, 80)


def _hide_atac(mdata: MuData, hidden: np.ndarray, garbage: bool) -> MuData:
    mdata = mdata.copy()
    x = mdata["accessibility"].X.copy()
    if garbage:  # values that must be ignored: the obs mask says the cells lack ATAC
        x[hidden] = np.random.default_rng(0).integers(0, 3, size=x[hidden].shape)
    else:
        x[hidden] = 0
    mdata["accessibility"].X = x
    mdata.obs["has_atac"] = ~hidden
    return mdata


def test_mosaic_training_ignores_cells_without_the_modality():
    mods = ("rna", "atac")
    hidden = np.arange(200) % 2 == 1
    base = synthetic_mudata(mods)
    zero_rows, _ = train_tiny(mods, _hide_atac(base, hidden, garbage=False))
    masked, _ = train_tiny(
        mods,
        _hide_atac(base, hidden, garbage=True),
        setup={"observed_keys": {"atac": "has_atac"}},
    )
    # all-zero rows and a mask over garbage rows train exactly the same model
    for (name, a), b in zip(
        zero_rows.module.state_dict().items(), masked.module.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    history = zero_rows.diffusion_history
    assert np.isfinite(history["diffusion_loss_atac_train"].to_numpy(float)).all()
    # translate the cells that lack ATAC
    out = zero_rows.get_translated_modality(indices=np.flatnonzero(hidden), **FAST)
    assert out.n_obs == hidden.sum() and np.isfinite(out.X).all()


def test_mosaic_reconstruction_loss_counts_only_measured_cells():
    scvi.settings.seed = 0
    mods = ("rna", "atac")
    hidden = np.arange(200) < 50
    model, mdata = train_tiny(mods, _hide_atac(synthetic_mudata(mods), hidden, garbage=False))
    module = model.module
    tensors = next(iter(model._make_data_loader(mdata, batch_size=200, shuffle=False)))
    inference, generative, loss = module.forward(tensors)
    observed = inference["observed"]
    assert torch.equal(observed["atac"], torch.as_tensor(~hidden))
    assert observed["rna"].all()
    per_cell = loss.reconstruction_loss["reconstruction_loss_atac"]
    assert (per_cell[torch.as_tensor(hidden)] == 0).all()
    assert (inference["z"]["atac"][torch.as_tensor(hidden)] == 0).all()
    expected = per_cell[torch.as_tensor(~hidden)].mean()
    torch.testing.assert_close(loss.extra_metrics["reconstruction_loss_atac"], expected)


def test_pad_mosaic_aligns_unpaired_modalities():
    full = synthetic_mudata(("rna", "atac"))
    rna = full["rna"][:150].copy()
    atac = full["accessibility"][100:].copy()
    atac.layers["counts"] = atac.X.copy()
    mdata = MuData({"rna": rna, "accessibility": atac})
    mdata.obs["labels"] = full.obs["labels"].loc[mdata.obs_names].to_numpy()
    mdata.obs["batch"] = full.obs["batch"].loc[mdata.obs_names].to_numpy()
    padded = pad_mosaic(mdata)
    assert padded.n_obs == 200
    assert padded["rna"].n_obs == padded["accessibility"].n_obs == 200
    assert padded.obs["has_rna"].sum() == 150 and padded.obs["has_accessibility"].sum() == 100
    a = padded["accessibility"]
    np.testing.assert_array_equal(a[atac.obs_names].X.toarray(), atac.X)  # values kept
    np.testing.assert_array_equal(a[atac.obs_names].layers["counts"].toarray(), atac.X)
    assert a[~padded.obs["has_accessibility"].to_numpy()].X.nnz == 0
    assert mdata["rna"].n_obs == 150  # input untouched
    SCDX.setup_mudata(
        padded,
        modalities={"rna_layer": "rna", "atac_layer": "accessibility"},
        labels_key="labels",
        observed_keys={"rna": "has_rna", "atac": "has_accessibility"},
    )


def test_three_line_script_after_save_and_load(trained, tmp_path):
    model, mdata = trained
    query = _only(mdata, "rna")
    expected = model.get_translated_modality(query, "rna", "atac", **FAST)
    model.save(tmp_path / "model")
    # the user's script: a saved model, an RNA-only AnnData, an AnnData of ATAC out
    loaded = SCDX.load(tmp_path / "model")
    atac = loaded.get_translated_modality(query, "rna", "atac", **FAST)
    np.testing.assert_array_equal(atac.X, expected.X)


def test_sources_enter_at_the_timesteps_chosen_on_validation_cells(trained):
    model, _ = trained
    diffusion = model.module.diffusion
    assert diffusion.condition_noise == 500  # the default configuration
    scores = model.condition_timestep_scores_
    assert set(scores) == set(diffusion.modalities)
    for i, m in enumerate(diffusion.modalities):
        assert list(scores[m]) == [0, 62, 125, 188, 250, 312, 375, 438, 500]
        best = max(scores[m], key=lambda s: (scores[m][s], -s))
        assert int(diffusion.condition_timesteps[i]) == best


def test_without_validation_cells_sources_get_half_the_noise_range(trained):
    model, _ = trained
    diffusion = model.module.diffusion
    chosen = diffusion.condition_timesteps.clone()
    try:
        assert fit_condition_timesteps(model, []) == {}
        assert diffusion.condition_timesteps.tolist() == [250, 250]
    finally:
        diffusion.condition_timesteps.copy_(chosen)


@pytest.mark.parametrize("method", ["replacement", "guidance"])
def test_zero_shot_methods_are_the_samplers_on_scaled_latents(trained, method):
    """The module pipeline gives what the public pieces give, composed by hand."""
    model, mdata = trained
    idx = np.arange(6)
    out = model.get_translated_modality(
        mdata, "rna", "atac", method=method, n_steps=5, seed=3, indices=idx, return_type="numpy"
    )
    module, diffusion = model.module, model.module.diffusion
    sampler = ReplacementSampler if method == "replacement" else GuidanceSampler
    generator = torch.Generator().manual_seed(3)
    batch_index = torch.zeros((6, 1), dtype=torch.long)
    with torch.random.fork_rng():
        torch.manual_seed(4)
        x = {"rna": torch.as_tensor(mdata["rna"].X[idx], dtype=torch.float32)}
        z = module.inference(x, batch_index)["z"]
        null = diffusion.condition_codes(None, None, 6)  # the null label and batch
        eps_fn = with_labels(diffusion.labelled_denoiser(), null)
        noise = sample_noise({"atac": diffusion.latent_dims["atac"]}, 6, generator)
        x0 = sampler(clip_x0=diffusion.resolve_clip_x0("auto"))(
            eps_fn, noise, diffusion.schedule, 5, generator, condition=diffusion.scale(z)
        )
        latent = diffusion.unscale({"atac": x0["atac"]})
        expected = module.decode_normalized(latent, batch_index)["atac"]
    np.testing.assert_array_equal(out, expected.numpy())


def test_guidance_with_zero_strength_is_replacement(trained):
    model, mdata = trained
    kwargs = {"n_steps": 6, "seed": 2, "indices": np.arange(20), "return_type": "numpy"}
    replacement = model.get_translated_modality(mdata, method="replacement", **kwargs)
    guidance = model.get_translated_modality(
        mdata, method="guidance", guidance_strength=0.0, **kwargs
    )
    np.testing.assert_array_equal(replacement, guidance)


@pytest.mark.parametrize(("method", "sampler"), [("learned", "dpm++2m"), ("replacement", "mean")])
def test_default_steps_are_the_samplers(trained, method, sampler):
    model, mdata = trained
    out = model.get_translated_modality(mdata, method=method, sampler=sampler, indices=[0, 1])
    name = sampler if method == "learned" else method
    expected = SAMPLERS[name].default_steps or len(model.module.diffusion.schedule)
    assert out.uns["scdx_translation"]["n_steps"] == expected


def test_expected_log1p_and_expected_counts(trained):
    model, mdata = trained
    atac = _only(mdata, "atac")
    values = {
        e: model.get_translated_modality(atac, "atac", "rna", expected=e, seed=0)
        for e in ("log1p", "counts")
    }
    assert values["log1p"].uns["scdx_translation"]["expected"] == "log1p"
    log_mean, mean = np.log1p(values["log1p"].X), np.log1p(values["counts"].X)
    assert (log_mean <= mean + 1e-4).all() and (log_mean < mean - 1e-3).any()  # Jensen
    # the expectation for a cell measured at library_size counts, of the same decoded NB
    likelihood = model.module.likelihoods["rna"]
    with torch.no_grad():
        logits = torch.log(torch.as_tensor(values["counts"].X))  # softmax: the proportions
        expected = likelihood.expected_log1p(logits, 1e4, 1e4).numpy()
    np.testing.assert_allclose(log_mean, expected, rtol=1e-4, atol=1e-4)
    rna = _only(mdata, "rna")  # accessibility probabilities do not depend on it
    probabilities = [
        model.get_translated_modality(rna, "rna", "atac", expected=e, seed=0).X
        for e in ("log1p", "counts")
    ]
    assert np.array_equal(*probabilities)
    with pytest.raises(ValueError, match="`expected` must be one of"):
        model.get_translated_modality(rna, "rna", "atac", expected="median")
