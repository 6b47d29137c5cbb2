"""Bad arguments of `generate` and `get_translated_modality`: a clear error or the right result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from anndata import AnnData
from helpers import (
    QUIET,
    SYNTHETIC_NAMES,
    TINY,
    synthetic_mudata,
    synthetic_setup_kwargs,
    train_tiny,
)
from mudata import MuData
from scipy import sparse

from scdx_scvi import SCDX

FAST = {"n_steps": 2, "seed": 0}


@pytest.fixture(scope="module")
def trained():
    return train_tiny(("rna", "atac"))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_cells": -1}, ValueError, "`n_cells` must be at least 0"),
        ({"n_cells": 2.5}, TypeError, "`n_cells` must be an integer"),
        ({"n_cells": "3"}, TypeError, "`n_cells`"),
        ({"labels": {"label_0": -1}}, ValueError, r"`labels\['label_0'\]` must be at least 0"),
        ({"labels": {"label_0": 1.5}}, TypeError, r"`labels\['label_0'\]` must be an integer"),
        ({"labels": "label_0"}, TypeError, "`labels` must be a dict"),
        ({"labels": 3}, TypeError, "`labels` must be a dict"),
        ({"labels": ["T cell"]}, ValueError, r"Unknown label\(s\) \['T cell'\]"),
        ({"n_cells": 3, "labels": ["label_0"]}, ValueError, "asks for 1 cells"),
        ({"n_cells": 2, "batch_size": 0}, ValueError, "`batch_size` must be at least 1"),
        ({"n_cells": 2, "batch_size": -4}, ValueError, "`batch_size`"),
        ({"n_cells": 2, "seed": -1}, ValueError, "`seed` must be at least 0"),
        ({"n_cells": 2, "seed": 1.5}, TypeError, "`seed` must be an integer"),
        ({"n_cells": 2, "seed": True}, TypeError, "`seed`"),
        ({"n_cells": 2, "n_steps": 0}, ValueError, "`n_steps` must be at least 1"),
        ({"n_cells": 2, "n_steps": -3}, ValueError, "`n_steps`"),
        ({"n_cells": 2, "n_steps": 2.5}, TypeError, "`n_steps` must be an integer"),
        ({"n_cells": 2, "sampler": "mean"}, ValueError, "it does not draw cells"),
        ({"n_cells": 2, "sampler": "replacement"}, ValueError, "`sampler` of `generate`"),
        ({"n_cells": 2, "sampler": "euler"}, ValueError, "`sampler` of `generate`"),
        ({"n_cells": 2, "batch": "batch_9"}, ValueError, "Unknown batch 'batch_9'"),
        ({"n_cells": 2, "clip_x0": 0}, ValueError, "`clip_x0` must be 'auto', None or a"),
        ({"n_cells": 2, "clip_x0": "none"}, ValueError, "`clip_x0`"),
    ],
)
def test_generate_refuses_bad_arguments(trained, kwargs, error, match):
    model, _ = trained
    with pytest.raises(error, match=match):
        model.generate(**kwargs)


@pytest.mark.parametrize("kwargs", [{"n_cells": 0}, {"labels": []}, {"labels": {"label_0": 0}}])
def test_generate_no_cells_gives_an_empty_mudata(trained, kwargs):
    model, mdata = trained
    empty = model.generate(**kwargs, **FAST)
    assert isinstance(empty, MuData) and empty.n_obs == 0
    for mod in mdata.mod:
        assert empty[mod].shape == (0, mdata[mod].n_vars)
        assert sparse.issparse(empty[mod].X)


def _rna_only(mdata: MuData) -> AnnData:
    rna = mdata[SYNTHETIC_NAMES["rna"]]
    return AnnData(rna.X.copy(), obs=mdata.obs[["labels"]].copy(), var=rna.var[[]].copy())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_steps": 0, "sampler": "dpm++2m"}, ValueError, "`n_steps` must be at least 1"),
        ({"n_steps": -1, "method": "replacement"}, ValueError, "`n_steps`"),
        ({"n_steps": 0}, ValueError, "`n_steps`"),  # even with the one-step mean sampler
        ({"n_samples": 0, "sampler": "dpm++2m"}, ValueError, "`n_samples` must be at least 1"),
        ({"n_samples": 1.5, "sampler": "dpm++2m"}, TypeError, "`n_samples` must be an integer"),
        ({"n_samples": 2}, ValueError, "one deterministic estimate"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be at least 1"),
        ({"seed": -1}, ValueError, "`seed` must be at least 0"),
        ({"seed": "0"}, TypeError, "`seed`"),
        ({"library_size": 0}, ValueError, "`library_size` must be a finite number above 0"),
        ({"library_size": -1e4}, ValueError, "`library_size`"),
        ({"method": "magic"}, ValueError, "`method` must be one of"),
        ({"sampler": "guidance"}, ValueError, "`sampler` must be one of"),
        ({"sampler": "euler"}, ValueError, "`sampler` must be one of"),
        ({"return_type": "pandas"}, ValueError, "`return_type` must be one of"),
        ({"labels": ["label_0"]}, ValueError, "Got 1 labels for 200 cells"),
        ({"labels": "no_column"}, KeyError, "not a column"),
        ({"labels": 3}, TypeError, "`labels` must be a column of the query obs"),
        ({"clip_x0": -1.0}, ValueError, "`clip_x0`"),
    ],
)
def test_translation_refuses_bad_arguments(trained, kwargs, error, match):
    model, mdata = trained
    with pytest.raises(error, match=match):
        model.get_translated_modality(_rna_only(mdata), "rna", "atac", **kwargs)


@pytest.mark.parametrize("method", ["learned", "replacement"])
def test_translation_of_no_cells_is_empty(trained, method):
    model, mdata = trained
    kwargs = {"method": method, "sampler": "dpm++2m", "indices": [], **FAST}
    out = model.get_translated_modality(_rna_only(mdata), sample_counts=True, **kwargs)
    n_peaks = mdata[SYNTHETIC_NAMES["atac"]].n_vars
    assert out.shape == (0, n_peaks) and out.layers["counts"].shape == (0, n_peaks)
    array = model.get_translated_modality(_rna_only(mdata), return_type="numpy", **kwargs)
    assert array.shape == (0, n_peaks)


def test_non_finite_latents_are_an_error_not_nan_output(trained):
    model, mdata = trained
    scale = model.module.diffusion.latent_scale_atac
    saved = scale.clone()
    scale.fill_(float("nan"))
    try:
        with pytest.raises(RuntimeError, match="non-finite atac latents"):
            model.generate(n_cells=3, **FAST)
        with pytest.raises(RuntimeError, match="non-finite atac latents"):
            model.get_translated_modality(_rna_only(mdata), "rna", "atac", indices=[0, 1])
    finally:
        scale.copy_(saved)
    assert np.isfinite(model.generate(n_cells=3, **FAST)["rna"].X.toarray()).all()


def test_a_modality_without_spread_is_named_at_train_diffusion(trained):
    model, _ = trained
    z = model.get_latent_representation(modality="rna")
    flat = {"rna": torch.as_tensor(z), "atac": torch.ones(len(z), model.module.n_latent["atac"])}
    with pytest.raises(ValueError, match="atac latents of the training cells have an average SD"):
        model.module.diffusion.fit_scaling(flat)


def test_a_single_peak_modality_is_named_at_train_diffusion():
    mods = ("rna", "atac")
    mdata = synthetic_mudata(mods)
    atac = mdata[SYNTHETIC_NAMES["atac"]]
    atac.X[:, 0] = 1  # one peak open in every cell: every cell has the same ATAC input
    single = MuData({"rna": mdata["rna"].copy(), SYNTHETIC_NAMES["atac"]: atac[:, :1].copy()})
    single.obs = mdata.obs.copy()
    SCDX.setup_mudata(single, **synthetic_setup_kwargs(mods))
    model = SCDX(single, use_batch=False, **TINY)
    model.train_autoencoder(max_epochs=1, **QUIET)
    with pytest.raises(ValueError, match="The atac latents of the training cells"):
        model.train_diffusion(max_steps=2, **QUIET)
    assert not model.is_diffusion_trained_
