from __future__ import annotations

import numpy as np
import pytest
import scvi
import torch
from helpers import (
    QUIET,
    SYNTHETIC_NAMES,
    TINY,
    synthetic_mudata,
    synthetic_setup_kwargs,
    train_tiny,
)
from scipy import sparse

from scdx_scvi import SCDX
from scdx_scvi.model import _diffusion_mixin as diffusion_mixin
from scdx_scvi.model._diffusion_mixin import VALIDATION_EVERY_STEPS

COMBINATIONS = [("rna", "atac"), ("rna", "protein"), ("rna", "atac", "protein")]
_train = train_tiny


@pytest.fixture(scope="module", params=COMBINATIONS, ids=["+".join(c) for c in COMBINATIONS])
def trained(request):
    return (*_train(request.param), request.param)


def test_train_runs_both_stages_with_separate_histories(trained):
    model, mdata, mods = trained
    assert model.is_trained and model.is_diffusion_trained_
    assert "reconstruction_loss_train" in model.history
    assert not any(k.startswith("diffusion") for k in model.history)
    for m in mods:
        for split in ("train", "validation"):
            values = model.diffusion_history[f"diffusion_loss_{m}_{split}"].to_numpy(float)
            assert np.isfinite(values).all()
    assert len(model.train_indices) + len(model.validation_indices) == mdata.n_obs


def test_generate_returns_paired_cells_of_the_requested_labels(trained):
    model, mdata, mods = trained
    generated = model.generate(labels={"label_0": 7, "label_2": 4}, seed=0, batch_size=5)
    assert list(generated.mod) == [SYNTHETIC_NAMES[m] for m in mods]
    assert generated.n_obs == 11
    assert generated.obs["labels"].value_counts().to_dict() == {
        "label_0": 7, "label_2": 4, "label_1": 0
    }  # fmt: skip
    for m in mods:
        adata = generated[SYNTHETIC_NAMES[m]]
        assert isinstance(adata.X, sparse.csr_matrix)
        assert adata.X.dtype == np.float32
        assert list(adata.var_names) == list(mdata[SYNTHETIC_NAMES[m]].var_names)
        values = adata.X.toarray()
        assert (values >= 0).all() and np.array_equal(values, np.round(values))
        if m == "atac":
            assert set(np.unique(values)) <= {0.0, 1.0}
        assert list(adata.obs["labels"]) == list(generated.obs["labels"])


def test_generate_is_reproducible_with_a_seed(trained):
    model, _, mods = trained
    first = model.generate(labels=["label_1"] * 6, seed=3)
    again = model.generate(labels=["label_1"] * 6, seed=3)
    other = model.generate(labels=["label_1"] * 6, seed=4)
    for mod in first.mod:
        assert (first[mod].X != again[mod].X).nnz == 0
    assert any((first[mod].X != other[mod].X).nnz > 0 for mod in first.mod)


def test_generate_default_chunk_bounds_the_decoded_values(trained, monkeypatch):
    model, _, _ = trained
    widest = max(model.module.n_features.values())
    monkeypatch.setattr(diffusion_mixin, "_GENERATE_BLOCK_VALUES", 3 * widest + 1)
    chunks = []
    generate = model.module.generate
    monkeypatch.setattr(
        model.module, "generate", lambda y, *a, **k: chunks.append(len(y)) or generate(y, *a, **k)
    )
    default = model.generate(labels=["label_1"] * 7, seed=3)
    assert chunks == [3, 3, 1]  # at most 3 * widest values per decoded chunk
    explicit = model.generate(labels=["label_1"] * 7, seed=3, batch_size=3)
    for mod in default.mod:
        assert (default[mod].X != explicit[mod].X).nnz == 0
    chunks.clear()
    model.generate(labels=["label_1"] * 7, seed=3, batch_size=7)  # an explicit size is kept
    assert chunks == [7]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++2m"])
@pytest.mark.parametrize("guidance_scale", [1.0, 0.0, 3.0])
def test_samplers_and_guidance(sampler, guidance_scale):
    model, _ = _shared_model()
    generated = model.generate(
        n_cells=5, sampler=sampler, n_steps=4, guidance_scale=guidance_scale, seed=1
    )
    assert generated.n_obs == 5
    assert set(generated.obs["labels"]) <= {"label_0", "label_1", "label_2"}


_CACHE: dict = {}


def _shared_model():
    if "model" not in _CACHE:
        _CACHE["model"] = _train(("rna", "atac"))
    return _CACHE["model"]


def test_save_load_generate_reproduces_the_cells(tmp_path):
    model, mdata = _shared_model()
    expected = model.generate(labels={"label_0": 4}, seed=7)
    model.save(tmp_path / "model")
    loaded = SCDX.load(tmp_path / "model", adata=mdata, accelerator="cpu")
    assert loaded.is_diffusion_trained_
    assert set(loaded.diffusion_history) == set(model.diffusion_history)
    got = loaded.generate(labels={"label_0": 4}, seed=7)
    for mod in expected.mod:
        assert (expected[mod].X != got[mod].X).nnz == 0
    without_data = SCDX.load(tmp_path / "model", accelerator="cpu")
    got = without_data.generate(labels={"label_0": 4}, seed=7)
    assert (expected["rna"].X != got["rna"].X).nnz == 0


def test_generation_errors():
    model, _ = _shared_model()
    with pytest.raises(ValueError, match=r"Unknown label\(s\) \['T cell'\].*label_0"):
        model.generate(labels={"T cell": 3})
    with pytest.raises(ValueError, match="Give `n_cells`"):
        model.generate()
    counts = model.module.label_counts.clone()
    model.module.label_counts[1] = 0  # a category of the column that no training cell had
    try:
        with pytest.raises(ValueError, match=r"No training cell has label\(s\) \['label_1'\]"):
            model.generate(labels={"label_0": 2, "label_1": 1})
        assert model.generate(labels={"label_0": 2}, n_steps=2).n_obs == 2
    finally:
        model.module.label_counts.copy_(counts)
    with pytest.raises(ValueError, match="asks for 2 cells"):
        model.generate(n_cells=3, labels=["label_0", "label_1"])
    with pytest.raises(ValueError, match="valid|Unknown sampler|sampler"):
        model.generate(n_cells=2, sampler="euler")
    # the autoencoder is batch-conditioned: the batch picks the decoder's batch
    assert list(model.generate(n_cells=2, batch="batch_0").obs["batch"]) == ["batch_0"] * 2
    untrained = SCDX(model.adata, **TINY)
    with pytest.raises(RuntimeError, match="Train the diffusion first"):
        untrained.generate(n_cells=2)
    with pytest.raises(RuntimeError, match="Train the autoencoder first"):
        untrained.train_diffusion(max_steps=2)


def test_diffusion_leaves_the_autoencoder_untouched():
    model, mdata = _shared_model()
    before = {k: v.clone() for k, v in model.module.state_dict().items() if "diffusion" not in k}
    latent = model.get_latent_representation()
    model.train_diffusion(max_steps=5, **QUIET)
    after = model.module.state_dict()
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, msg=key)
    np.testing.assert_array_equal(model.get_latent_representation(), latent)
    assert all(p.requires_grad for p in model.module.encoders.parameters())
    ema = dict(model.module.diffusion.ema.named_parameters())
    live = dict(model.module.diffusion.denoiser.named_parameters())
    assert any(not torch.equal(ema[k], live[k]) for k in live)


def test_fewer_steps_than_one_epoch():
    model, _ = _shared_model()
    model.train_diffusion(max_steps=1, batch_size=16, **QUIET)  # early stopping needs an epoch
    assert model.trainer.global_step == 1


@pytest.mark.parametrize("latent_scaling", ["scalar", "per_dim"])
def test_latent_scaling(latent_scaling):
    mods = ("rna", "atac")
    model, mdata = _train(mods, latent_scaling=latent_scaling)
    train = model.train_indices
    for m in mods:
        z = torch.as_tensor(model.get_latent_representation(modality=m)[train])
        scaled = model.module.diffusion.scale({m: z})[m]
        if latent_scaling == "scalar":
            # the reference: average per-dimension SD of 0.1, no centring
            assert float(scaled.std(0).mean()) == pytest.approx(0.1, rel=1e-3)
        else:
            np.testing.assert_allclose(scaled.std(0).numpy(), 1.0, rtol=1e-3)
            np.testing.assert_allclose(scaled.mean(0).numpy(), 0.0, atol=1e-4)
        back = model.module.diffusion.unscale({m: scaled})[m]
        torch.testing.assert_close(back, z, rtol=1e-4, atol=1e-5)


def test_library_prior_is_fitted_per_label_on_training_cells():
    model, mdata = _shared_model()
    train = model.train_indices
    totals = np.log(np.asarray(mdata["rna"].X.sum(axis=1)).ravel()[train])
    labels = mdata.obs["labels"].to_numpy()[train]
    categories = model.adata_manager.get_state_registry("labels").categorical_mapping
    for code, name in enumerate(categories):
        expected = totals[labels == name]
        assert float(model.module.library_log_mean_rna[code]) == pytest.approx(
            expected.mean(), 1e-4
        )
        assert float(model.module.library_log_std_rna[code]) == pytest.approx(
            expected.std(ddof=1), 1e-4
        )


def test_depth_model_is_fitted_on_training_latents_and_used_by_generate():
    model, mdata = _shared_model()
    module = model.module
    assert module.generation_depth == "training_cells"
    train = model.train_indices
    for m in model.modalities:
        assert module.depth.fitted(m)
        x = mdata[SYNTHETIC_NAMES[m]].X[train]
        depth = np.asarray((x > 0).sum(axis=1) if m == "atac" else x.sum(axis=1)).ravel()
        z = model.get_latent_representation(modality=m)[train].astype(np.float64)
        design = np.c_[z, np.ones(len(z))]
        expected = np.linalg.lstsq(design, np.log(np.maximum(depth, 1)), rcond=None)[0]
        fitted = getattr(module.depth, f"coef_{m}").double().numpy()
        np.testing.assert_allclose(design @ fitted, design @ expected, atol=1e-3)
    # each setting changes the depth of the modalities it names (RNA is drawn first: the
    # ATAC draws then also differ where the RNA draws consumed the generator differently)
    drawn = {}
    for depth in ("latent_atac", "label", "latent", "training_cells"):
        module.generation_depth = depth
        drawn[depth] = model.generate(labels={"label_0": 6}, seed=5)
    module.generation_depth = "training_cells"
    rna, atac = SYNTHETIC_NAMES["rna"], SYNTHETIC_NAMES["atac"]
    assert (drawn["latent_atac"][rna].X != drawn["label"][rna].X).nnz == 0
    assert (drawn["latent_atac"][atac].X != drawn["label"][atac].X).nnz > 0
    assert (drawn["latent_atac"][rna].X != drawn["latent"][rna].X).nnz > 0
    assert (drawn["latent_atac"][rna].X != drawn["training_cells"][rna].X).nnz > 0
    # the training cells' library sizes, in training order, with their label codes
    kept = module.training_depths
    rna_totals = np.asarray(mdata[rna].X.sum(axis=1)).ravel()[train]
    np.testing.assert_allclose(kept.libraries[:, 0].numpy(), rna_totals, rtol=1e-6)
    categories = list(model.adata_manager.get_state_registry("labels").categorical_mapping)
    codes = [categories.index(x) for x in mdata.obs["labels"].to_numpy()[train]]
    assert kept.labels.tolist() == codes


def test_a_model_without_kept_training_libraries_warns_and_draws_the_log_normal():
    model, _ = _shared_model()
    kept = model.module.training_depths
    labels, libraries = kept.labels, kept.libraries
    try:
        kept.labels, kept.libraries = labels[:0], libraries[:0]  # as saved before they were kept
        with pytest.warns(UserWarning, match="run `train_diffusion\\(\\)` again"):
            older = model.generate(labels={"label_0": 6}, seed=5)
        model.module.generation_depth = "latent_atac"
        log_normal = model.generate(labels={"label_0": 6}, seed=5)
    finally:
        kept.labels, kept.libraries = labels, libraries
        model.module.generation_depth = "training_cells"
    for mod in older.mod:
        assert (older[mod].X != log_normal[mod].X).nnz == 0


def test_unconditional_model_and_improved_denoiser():
    scvi.settings.seed = 0
    mods = ("rna", "protein")
    mdata = synthetic_mudata(mods)
    kwargs = synthetic_setup_kwargs(mods)
    kwargs.pop("labels_key")
    SCDX.setup_mudata(mdata, **kwargs)
    model = SCDX(mdata, denoiser="improved", use_batch=False, **TINY)
    model.train(max_epochs=1, max_steps_diffusion=10, **QUIET)
    assert model.module.n_labels == 0
    generated = model.generate(n_cells=6, seed=0)
    assert generated.n_obs == 6 and "labels" not in generated.obs
    with pytest.raises(ValueError, match="unconditional"):
        model.generate(labels={"x": 1})
    with pytest.raises(ValueError, match="not conditioned on the batch"):
        model.generate(n_cells=2, batch="batch_0")


def test_batch_conditioned_diffusion():
    mods = ("rna", "atac")
    model, _ = _train(mods, diffusion_batch=True)
    generated = model.generate(labels={"label_1": 3}, batch="batch_1", seed=0)
    assert list(generated.obs["batch"]) == ["batch_1"] * 3
    with pytest.raises(ValueError, match="Unknown batch"):
        model.generate(n_cells=2, batch="batch_7")


# ------------------------------------------------------------------ training state


def test_epochs_trained_records_what_ran_with_early_stopping():
    scvi.settings.seed = 0
    mods = ("rna", "atac")
    mdata = synthetic_mudata(mods)
    SCDX.setup_mudata(mdata, **synthetic_setup_kwargs(mods))
    model = SCDX(mdata, **TINY)
    assert model.epochs_trained == {"autoencoder": 0, "diffusion": 0, "diffusion_steps": 0}
    # patience 1 with a tiny minimum improvement: early stopping ends both stages early
    stop = {"early_stopping_min_delta": 1e9}
    model.train_autoencoder(max_epochs=50, early_stopping_patience=1, **stop, **QUIET)
    model.train_diffusion(
        max_steps=400, batch_size=64, early_stopping=True, early_stopping_patience=1, **stop,
        **QUIET,
    )  # fmt: skip
    epochs = model.epochs_trained
    assert epochs["autoencoder"] == len(model.history["reconstruction_loss_train"]) == 2
    # one validation check per whole epoch after >= VALIDATION_EVERY_STEPS steps: the patience
    # spans that many steps however few cells there are
    steps_per_epoch = -(-len(model.train_indices) // 64)
    every = -(-VALIDATION_EVERY_STEPS // steps_per_epoch)
    n_epochs = len(model.diffusion_history["diffusion_loss_train"])
    assert epochs["diffusion"] == n_epochs == 2 * every
    assert epochs["diffusion_steps"] == model.trainer.global_step == n_epochs * steps_per_epoch
    assert epochs["diffusion_steps"] >= 2 * VALIDATION_EVERY_STEPS
    # repeated runs add up, as scvi-tools' history does
    model.train_diffusion(max_steps=3, batch_size=64, **QUIET)
    assert model.epochs_trained["diffusion_steps"] == epochs["diffusion_steps"] + 3
    assert model.epochs_trained["diffusion"] == n_epochs + 1  # 3 steps: one partial epoch


def test_retraining_the_autoencoder_makes_the_diffusion_stale():
    model, _ = _train(("rna", "atac"))
    with pytest.warns(UserWarning, match="stale"):
        model.train_autoencoder(max_epochs=1, **QUIET)
    assert not model.is_diffusion_trained_
    with pytest.raises(RuntimeError, match=r"run `model.train_diffusion\(\)` again"):
        model.generate(n_cells=2)
    with pytest.raises(RuntimeError, match=r"run `model.train_diffusion\(\)` again"):
        model.get_translated_modality(model.adata, "rna", "atac")
    model.train_diffusion(max_steps=2, **QUIET)
    assert model.generate(n_cells=2, n_steps=2, seed=0).n_obs == 2


@pytest.mark.parametrize(
    ("method", "kwargs", "error", "match"),
    [
        ("train", {"max_epochs": 0}, ValueError, "`max_epochs` must be at least 1"),
        ("train", {"max_steps_diffusion": 0}, ValueError, "`max_steps_diffusion`"),
        ("train", {"max_steps_diffusion": -5}, ValueError, "`max_steps_diffusion`"),
        ("train", {"max_epochs": 2.5}, TypeError, "`max_epochs` must be an integer"),
        ("train", {"diffusion_kwargs": {"batch_size": 0}}, ValueError, "diffusion_kwargs"),
        ("train_autoencoder", {"max_epochs": -1}, ValueError, "`max_epochs`"),
        ("train_autoencoder", {"batch_size": 0}, ValueError, "`batch_size`"),
        ("train_diffusion", {"max_steps": 0}, ValueError, "`max_steps`"),
        ("train_diffusion", {"batch_size": -3}, ValueError, "`batch_size`"),
        ("train_diffusion", {"max_steps": True}, TypeError, "`max_steps`"),
    ],
)
def test_training_arguments_are_checked_before_any_training(method, kwargs, error, match):
    model, _ = _shared_model()
    state = (model.is_trained_, model.is_diffusion_trained_, model.epochs_trained)
    with pytest.raises(error, match=match):
        getattr(model, method)(**kwargs, **QUIET)
    assert (model.is_trained_, model.is_diffusion_trained_, model.epochs_trained) == state


def test_a_stage_that_ran_no_step_is_not_trained():
    mods = ("rna", "atac")
    mdata = synthetic_mudata(mods)
    SCDX.setup_mudata(mdata, **synthetic_setup_kwargs(mods))
    model = SCDX(mdata, **TINY)
    with pytest.raises(RuntimeError, match="no optimiser step"):
        model.train_autoencoder(max_epochs=1, max_steps=0, **QUIET)
    assert not model.is_trained_
    model.train_autoencoder(max_epochs=1, **QUIET)
    with pytest.raises(RuntimeError, match="no optimiser step"):
        model.train_diffusion(max_steps=5, limit_train_batches=0, **QUIET)
    assert not model.is_diffusion_trained_ and model.is_trained_
    assert model.epochs_trained["diffusion_steps"] == 0
