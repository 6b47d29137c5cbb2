"""Bad input to the model's constructor, getters, save and load: a clear error, no wrong result."""

from __future__ import annotations

import signal
import warnings
from pathlib import Path

import mudata as md
import numpy as np
import pytest
import scvi
import torch
from lightning.pytorch import Callback
from scipy import sparse

from scdx_scvi import SCDX
from scdx_scvi.datasets import simulate_multiome

QUIET = {"enable_progress_bar": False, "accelerator": "cpu"}


def _simulate():
    mdata, _ = simulate_multiome(n_cells=200, n_genes=80, n_peaks=150)
    return mdata


@pytest.fixture(scope="module")
def trained():
    scvi.settings.seed = 0
    warnings.filterwarnings("ignore", category=FutureWarning)
    mdata = _simulate()
    SCDX.setup_mudata(mdata, labels_key="cell_type", batch_key="batch")
    model = SCDX(mdata, architecture="small", n_channels=16)
    model.train_autoencoder(max_epochs=1, **QUIET)
    return model, mdata


def _copy_with(mdata, modality="rna", change=None):
    copy = mdata.copy()
    x = copy[modality].X.toarray().astype(np.float32)
    change(x)
    copy[modality].X = sparse.csr_matrix(x)
    return copy


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_latent": 0}, ValueError, "n_latent"),
        ({"n_latent": 2.5}, TypeError, "n_latent"),
        ({"n_latent": {"rna": -1}}, ValueError, r"n_latent\['rna'\]"),
        ({"n_latent": {"gene": 8}}, ValueError, "unknown key"),
        ({"n_hidden": {"rna": [0]}}, ValueError, r"n_hidden\['rna'\]"),
        ({"n_hidden": {"protein": [8]}}, ValueError, "unknown key"),
        ({"n_hidden": [64]}, TypeError, "n_hidden"),
        ({"n_hidden": {"rna": 64}}, TypeError, "list of widths"),
        ({"dropout_rate": -0.1}, ValueError, "dropout_rate"),
        ({"n_channels": 0}, ValueError, "n_channels"),
        ({"use_batch": "yes"}, TypeError, "use_batch"),
        ({"atlas_widths": 1}, TypeError, "atlas_widths"),
        ({"denoiser_kwargs": 5}, TypeError, "denoiser_kwargs"),
    ],
)  # fmt: skip
def test_bad_model_arguments_are_refused(trained, kwargs, error, match):
    _, mdata = trained
    with pytest.raises(error, match=match):
        SCDX(mdata, architecture="small", **kwargs)


def test_a_bad_freed_memory_policy_is_refused_before_training(trained):
    model, _ = trained
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    with pytest.raises(ValueError, match="`freed_memory` must be one of"):
        model.train_autoencoder(max_epochs=1, freed_memory=True, **QUIET)
    assert model.is_trained_
    torch.testing.assert_close(model.module.state_dict(), state, rtol=0, atol=0, equal_nan=True)


def test_diffusion_batch_needs_a_batch_key():
    mdata = _simulate()
    SCDX.setup_mudata(mdata, labels_key="cell_type")
    with pytest.raises(ValueError, match="batch_key"):
        SCDX(mdata, diffusion_batch=True)


def test_unregistered_data_asks_for_setup_mudata(trained):
    _, mdata = trained
    with pytest.raises(ValueError, match=r"SCDX.setup_mudata"):
        SCDX(_simulate())
    with pytest.raises(ValueError, match="copy or a view of a registered one"):
        SCDX(mdata.copy())
    with pytest.raises(ValueError, match="copy or a view of a registered one"):
        SCDX(mdata[:10])
    with pytest.raises(TypeError, match="needs a MuData"):
        SCDX(mdata["rna"])
    with pytest.raises(ValueError, match="setup_mudata"):
        SCDX()


# ---------------------------------------------------------------- getters


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda x: x.__setitem__((0, 0), 0.5), "non-integer"),
        (lambda x: x.__setitem__((0, 0), np.nan), "NaN"),
        (lambda x: x.__setitem__((0, 0), -3), "negative"),
    ],
)
def test_getters_check_copies_of_the_registered_data(trained, change, match):
    """A copy keeps the registration id, but its values are checked like new data."""
    model, mdata = trained
    copy = _copy_with(mdata, change=change)
    assert copy.uns["_scvi_uuid"] == mdata.uns["_scvi_uuid"]
    with pytest.raises(ValueError, match=match):
        model.get_latent_representation(copy)
    with pytest.raises(ValueError, match=match):
        model.get_normalized_expression(copy)


def test_getters_check_the_registered_data_after_a_change(trained):
    model, mdata = trained
    original = mdata["rna"].X
    try:
        mdata["rna"].X = original * 0.5
        with pytest.raises(ValueError, match="non-integer"):
            model.get_latent_representation()
    finally:
        mdata["rna"].X = original
    model.get_latent_representation()


def test_getters_refuse_copies_with_other_features(trained):
    model, mdata = trained
    copy = mdata.copy()
    copy["rna"].var_names = [f"other_{i}" for i in range(copy["rna"].n_vars)]
    with pytest.raises(ValueError, match="gene 0 is 'other_0'"):
        model.get_latent_representation(copy)


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [("batch", np.nan, "missing value"), ("cell_type", "alien", r"not set up with: \['alien'\]")],
)
def test_getters_refuse_copies_with_bad_categories(trained, column, value, match):
    model, mdata = trained
    copy = mdata.copy()
    copy.obs[column] = copy.obs[column].astype(object)
    copy.obs.iloc[0, copy.obs.columns.get_loc(column)] = value
    with pytest.raises(ValueError, match=match):
        model.get_latent_representation(copy)


@pytest.mark.parametrize(
    ("library_size", "error"),
    [(0, ValueError), (-1.0, ValueError), (np.nan, ValueError), (np.inf, ValueError),
     ("obs", ValueError), (True, TypeError)],
)  # fmt: skip
def test_bad_library_size(trained, library_size, error):
    model, _ = trained
    with pytest.raises(error, match="library_size"):
        model.get_normalized_expression(library_size=library_size)
    with pytest.raises(error, match="library_size"):
        model.get_normalized_modalities(library_size=library_size)


@pytest.mark.parametrize(
    ("indices", "error", "match"),
    [([500], ValueError, "outside"), ([-1], ValueError, "outside"), ([], ValueError, "no cells"),
     ([0.5], TypeError, "integer"), ("a", TypeError, "1-d"), (np.ones(3, bool), ValueError, "3")],
)  # fmt: skip
def test_bad_indices(trained, indices, error, match):
    model, _ = trained
    with pytest.raises(error, match=match):
        model.get_latent_representation(indices=indices)


def test_boolean_indices_select_cells(trained):
    model, mdata = trained
    mask = np.zeros(mdata.n_obs, bool)
    mask[[3, 7]] = True
    np.testing.assert_array_equal(
        model.get_latent_representation(indices=mask),
        model.get_latent_representation(indices=[3, 7]),
    )
    frame = model.get_normalized_expression(indices=mask)
    assert frame.index.tolist() == mdata.obs_names[[3, 7]].tolist()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [({"gene_list": "gene_0"}, TypeError, "gene_list"),
     ({"gene_list": []}, ValueError, "gene_list"),
     ({"batch_size": 0}, ValueError, "batch_size"),
     ({"batch_size": 2.5}, TypeError, "batch_size")],
)  # fmt: skip
def test_bad_getter_arguments(trained, kwargs, error, match):
    model, _ = trained
    with pytest.raises(error, match=match):
        model.get_normalized_expression(**kwargs)


# ---------------------------------------------------------------- save and load


def test_failed_save_keeps_the_old_model(trained, tmp_path):
    model, mdata = trained
    target = tmp_path / "model"
    model.save(target, save_anndata=True)
    before = sorted(p.name for p in target.iterdir())
    mdata.uns["unwritable"] = object()
    try:
        with pytest.raises(ValueError, match="unwritable") as info:
            model.save(target, overwrite=True, save_anndata=True)
    finally:
        del mdata.uns["unwritable"]
    assert "Nothing at" in str(info.value)
    assert sorted(p.name for p in target.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no partial folder left
    loaded = SCDX.load(target, accelerator="cpu")
    np.testing.assert_array_equal(
        loaded.get_latent_representation(mdata), model.get_latent_representation(mdata)
    )


def test_save_replaces_the_model_and_keeps_other_files(trained, tmp_path):
    model, _ = trained
    target = tmp_path / "model"
    model.save(target, save_anndata=True)
    (target / "notes.txt").write_text("mine")
    model.save(target, overwrite=True, save_anndata=False)
    assert sorted(p.name for p in target.iterdir()) == ["model.pt", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_into_the_working_directory(trained, tmp_path, monkeypatch):
    model, _ = trained
    monkeypatch.chdir(tmp_path)
    model.save(".", overwrite=True)
    model.save(".", overwrite=True, save_anndata=True)
    assert Path.cwd() == tmp_path  # the directory itself was kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mdata.h5mu", "model.pt"]
    assert SCDX.load(".", accelerator="cpu").adata is not None


def test_save_leaves_the_users_columns_as_they_are(trained, tmp_path):
    """Writing makes repeated strings categorical in place; the user's MuData stays as it was."""
    model, mdata = trained
    mdata["rna"].var["kind"] = "gene"
    mdata["atac"].obs["qc"] = "pass"
    try:
        model.save(tmp_path / "model", save_anndata=True)
        assert mdata["rna"].var["kind"].dtype == object
        assert mdata["atac"].obs["qc"].dtype == object
        saved = md.read_h5mu(tmp_path / "model" / "mdata.h5mu")
        assert (saved["rna"].var["kind"] == "gene").all()
    finally:
        del mdata["rna"].var["kind"], mdata["atac"].obs["qc"]


def test_save_arguments(trained, tmp_path):
    model, _ = trained
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        model.save(tmp_path / "file", overwrite=True)
    model.save(tmp_path / "model")
    with pytest.raises(ValueError, match="overwrite=True"):
        model.save(tmp_path / "model")
    with pytest.raises(TypeError, match="prefix"):
        model.save(tmp_path / "other", prefix=5)
    with pytest.raises(ValueError, match="prefix"):
        model.save(tmp_path / "other", prefix="sub/model_")
    with pytest.raises(TypeError, match="dir_path"):
        model.save(None)
    with pytest.raises(TypeError, match="dir_path"):
        SCDX.load(123)


def test_load_errors_name_the_problem(trained, tmp_path):
    model, mdata = trained
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SCDX.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model.pt"):
        SCDX.load(tmp_path / "empty")
    model.save(tmp_path / "prefixed", prefix="first_")
    with pytest.raises(FileNotFoundError, match="prefix='first_'"):
        SCDX.load(tmp_path / "prefixed")

    model.save(tmp_path / "model")
    with pytest.raises(TypeError, match="needs a MuData"):
        SCDX.load(tmp_path / "model", adata=mdata["rna"].copy())
    loaded = SCDX.load(tmp_path / "model", accelerator="cpu")
    with pytest.raises(ValueError, match="loaded without data"):
        loaded.get_latent_representation()
    with pytest.raises(ValueError, match="loaded without data"):
        loaded.save(tmp_path / "again", save_anndata=True)

    (tmp_path / "model" / "mdata.h5mu").write_text("not hdf5")
    with pytest.raises(ValueError, match="adata=False"):
        SCDX.load(tmp_path / "model", accelerator="cpu")
    assert SCDX.load(tmp_path / "model", adata=False, accelerator="cpu").adata is None
    (tmp_path / "model" / "model.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged"):
        SCDX.load(tmp_path / "model", adata=False, accelerator="cpu")


# ---------------------------------------------------------------- Ctrl-C


class _Interrupt(Callback):
    def __init__(self, hook: str):
        setattr(self, hook, self.interrupt)

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt


@pytest.mark.parametrize("hook", ["setup", "on_train_batch_start"])
def test_ctrl_c_during_training_keeps_ctrl_c_working(hook):
    """Ctrl-C still works after an interrupted training.

    Lightning sets SIGINT to "ignore" on an interrupt and restores it only if the interrupt came
    after it registered its own handlers (not during ``setup``); the model restores it always.
    """
    mdata = _simulate()
    SCDX.setup_mudata(mdata, labels_key="cell_type")
    model = SCDX(mdata, architecture="small", n_channels=16)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        model.train_autoencoder(max_epochs=1, callbacks=[_Interrupt(hook)], **QUIET)
    assert signal.getsignal(signal.SIGINT) is handler
    assert not model.is_trained


def test_backed_data_in_getters(trained, tmp_path):
    """A backed copy of the data gives the getters' results of the data in memory."""
    model, mdata = trained
    mdata.write(tmp_path / "data.h5mu")
    backed = md.read_h5mu(tmp_path / "data.h5mu", backed="r")
    np.testing.assert_allclose(
        model.get_latent_representation(backed), model.get_latent_representation(mdata),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    assert backed.mod["rna"].isbacked
