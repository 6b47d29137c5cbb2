from __future__ import annotations

import logging

import mudata as md
import numpy as np
import pandas as pd
import pytest
from mudata import MuData
from scipy import sparse

from scdx_scvi import SCDX
from scdx_scvi.data import align_features

MODS = ("rna", "atac")


@pytest.fixture
def mdata(make_mudata):
    return make_mudata(MODS, sparse=True)


@pytest.fixture
def kwargs(setup_kwargs):
    return setup_kwargs(MODS)


def _snapshot(mdata: MuData) -> dict:
    return {
        "mods": list(mdata.mod.keys()),
        "obs": mdata.obs.copy(),
        "uns": set(mdata.uns.keys()),
        **{f"{m}.X": mdata[m].X.copy() for m in mdata.mod},
        **{f"{m}.var": mdata[m].var.copy() for m in mdata.mod},
        **{f"{m}.obs": mdata[m].obs.copy() for m in mdata.mod},
    }


def test_setup_changes_nothing_but_registration_keys(mdata, kwargs):
    before = _snapshot(mdata)
    SCDX.setup_mudata(mdata, **kwargs)
    SCDX(mdata).train_autoencoder(max_epochs=1, enable_progress_bar=False)
    after = _snapshot(mdata)

    assert after["mods"] == before["mods"]
    assert after["uns"] - before["uns"] <= {"_scvi_uuid", "_scvi_manager_uuid"}
    added = set(after["obs"].columns) - set(before["obs"].columns)
    assert all(c.startswith("_scvi") for c in added)
    pd.testing.assert_frame_equal(after["obs"][before["obs"].columns], before["obs"])
    for m in mdata.mod:
        assert (after[f"{m}.X"] != before[f"{m}.X"]).nnz == 0
        pd.testing.assert_frame_equal(after[f"{m}.var"], before[f"{m}.var"])
        pd.testing.assert_frame_equal(after[f"{m}.obs"], before[f"{m}.obs"])


def test_modalities_are_inferred_from_common_names(make_mudata):
    mdata = make_mudata(MODS)
    renamed = MuData({"rna": mdata["rna"], "atac": mdata["accessibility"]})
    SCDX.setup_mudata(renamed)
    model = SCDX(renamed)
    assert model.modalities == ("rna", "atac")
    assert model.registry_["setup_args"]["modalities"] == {"rna_layer": "rna", "atac_layer": "atac"}


@pytest.mark.parametrize(
    ("modalities", "error", "match"),
    [
        ({"rna_layer": "rna", "atac_layer": "chromatin"}, ValueError, "no such modality"),
        ({"rna_layer": "rna"}, ValueError, "at least two modalities"),
        ({"rna_layer": "rna", "atac_layer": "accessibility", "rna_obs": "rna"}, ValueError,
         "unknown key"),
    ],
)  # fmt: skip
def test_bad_modalities(mdata, modalities, error, match):
    with pytest.raises(error, match=match):
        SCDX.setup_mudata(mdata, modalities=modalities)


def test_modalities_that_cannot_be_inferred(mdata):
    odd = MuData({"first": mdata["rna"].copy(), "second": mdata["accessibility"].copy()})
    with pytest.raises(ValueError, match="Could not tell"):
        SCDX.setup_mudata(odd)


def test_anndata_instead_of_mudata(mdata):
    with pytest.raises(TypeError, match="expects a MuData"):
        SCDX.setup_mudata(mdata["rna"])


def test_unpaired_mudata(mdata, kwargs):
    atac = mdata["accessibility"][: mdata.n_obs - 10].copy()
    unpaired = MuData({"rna": mdata["rna"].copy(), "accessibility": atac})
    with pytest.raises(ValueError, match="has 190 cells, 190 of the 200 cells"):
        SCDX.setup_mudata(unpaired, **kwargs)


def test_modalities_in_different_cell_order(mdata, kwargs):
    reordered = MuData(
        {"rna": mdata["rna"].copy(), "accessibility": mdata["accessibility"][::-1].copy()}
    )
    with pytest.raises(ValueError, match="same cells in a different order"):
        SCDX.setup_mudata(reordered, **kwargs)


def test_missing_layer(mdata, kwargs):
    with pytest.raises(KeyError, match="Layer 'counts' not found"):
        SCDX.setup_mudata(mdata, rna_layer="counts", **kwargs)


@pytest.mark.parametrize(
    ("value", "match"),
    [(-1.0, "negative values"), (np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
     (0.5, "non-integer values")],
)  # fmt: skip
@pytest.mark.parametrize("dense", [False, True])
def test_bad_rna_values(mdata, kwargs, value, match, dense):
    x = mdata["rna"].X.toarray().astype(np.float32)
    x[3, 4] = value
    mdata["rna"].X = x if dense else sparse.csr_matrix(x)
    with pytest.raises(ValueError, match=match):
        SCDX.setup_mudata(mdata, **kwargs)


def test_non_integer_accessibility_is_binarised(mdata, kwargs):
    tfidf = mdata["accessibility"].X.copy()
    tfidf.data = tfidf.data * 0.37
    mdata["accessibility"].X = tfidf
    SCDX.setup_mudata(mdata, **kwargs)
    with pytest.raises(ValueError, match="negative"):
        tfidf.data[0] = -0.1
        SCDX.setup_mudata(mdata, **kwargs)


def test_non_integer_protein(make_mudata, setup_kwargs):
    mdata = make_mudata(("rna", "protein"))
    mdata["protein_expression"].X = mdata["protein_expression"].X + 0.25
    with pytest.raises(ValueError, match="protein likelihood is a negative binomial"):
        SCDX.setup_mudata(mdata, **setup_kwargs(("rna", "protein")))


def _zero_rows(mdata, mod, rows):
    x = mdata[mod].X.tolil()
    x[rows, :] = 0
    mdata[mod].X = x.tocsr()


def test_cells_without_counts_in_one_modality_are_mosaic(mdata, kwargs, caplog):
    _zero_rows(mdata, "accessibility", [7, 11])
    with caplog.at_level(logging.INFO, logger="scdx_scvi"):
        SCDX.setup_mudata(mdata, **kwargs)
    assert "2 of 200 cells have no atac" in caplog.text


def test_cells_without_counts_in_every_modality(mdata, kwargs, make_mudata):
    _zero_rows(mdata, "accessibility", [7, 11, 12])
    _zero_rows(mdata, "rna", [7, 11])
    with pytest.raises(ValueError, match=r"2 cell\(s\) have no counts in any.*positions \[7, 11\]"):
        SCDX.setup_mudata(mdata, **kwargs)
    # a mask column counts too
    mdata = make_mudata(MODS, sparse=True)
    _zero_rows(mdata, "rna", [3])
    mdata.obs["has_atac"] = True
    mdata.obs.loc[mdata.obs_names[3], "has_atac"] = False
    with pytest.raises(ValueError, match=r"1 cell\(s\) have no counts in any.*\[3\]"):
        SCDX.setup_mudata(mdata, observed_keys={"atac": "has_atac"}, **kwargs)


def test_bad_observed_keys(mdata, kwargs):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \[.protein.\]"):
        SCDX.setup_mudata(mdata, observed_keys={"protein": "x"}, **kwargs)
    with pytest.raises(KeyError, match="not a column of mdata.obs"):
        SCDX.setup_mudata(mdata, observed_keys={"atac": "missing"}, **kwargs)
    mdata.obs["has_atac"] = "yes"
    with pytest.raises(ValueError, match="must be boolean"):
        SCDX.setup_mudata(mdata, observed_keys={"atac": "has_atac"}, **kwargs)


def test_sparse_arrays_are_rewrapped(mdata, kwargs, caplog):
    original = mdata["rna"].X.copy()
    mdata["rna"].X = sparse.csr_array(original)
    with caplog.at_level(logging.INFO, logger="scdx_scvi"):
        SCDX.setup_mudata(mdata, **kwargs)
    assert "sparse array" in caplog.text
    assert isinstance(mdata["rna"].X, sparse.csr_matrix)
    assert (mdata["rna"].X != original).nnz == 0
    SCDX(mdata).train_autoencoder(max_epochs=1, enable_progress_bar=False)


def test_dense_layers(make_mudata, setup_kwargs):
    mods = ("rna", "atac", "protein")
    mdata = make_mudata(mods, sparse=False)
    mdata["rna"].layers["counts"] = mdata["rna"].X.copy()
    SCDX.setup_mudata(mdata, rna_layer="counts", **setup_kwargs(mods))
    model = SCDX(mdata)
    model.train_autoencoder(max_epochs=1, enable_progress_bar=False)
    n_latent = model.module.n_latent["rna"]
    assert model.get_latent_representation(modality="rna").shape == (mdata.n_obs, n_latent)


def test_views_are_refused_at_setup(mdata, kwargs):
    with pytest.raises(ValueError, match=r"is a view.*mdata.copy\(\)"):
        SCDX.setup_mudata(mdata[:100], **kwargs)


@pytest.mark.parametrize("key", ["labels_key", "batch_key"])
def test_missing_category_values(mdata, kwargs, key):
    column = kwargs[key]
    values = mdata.obs[column].astype(object).to_numpy()
    values[[1, 5]] = None
    mdata.obs[column] = values
    with pytest.raises(ValueError, match="2 missing value"):
        SCDX.setup_mudata(mdata, **kwargs)


def test_unknown_obs_column(mdata, kwargs):
    with pytest.raises(KeyError, match="labels_key='cell_type'.* is not a column of mdata.obs"):
        SCDX.setup_mudata(mdata, **{**kwargs, "labels_key": "cell_type"})


def test_obs_keys_in_a_modality(mdata, kwargs):
    mdata["rna"].obs["cell_type"] = mdata.obs["labels"].to_numpy()
    SCDX.setup_mudata(
        mdata,
        labels_key="cell_type",
        modalities={"rna_layer": "rna", "atac_layer": "accessibility", "labels_key": "rna"},
    )
    model = SCDX(mdata)
    assert model.summary_stats.n_labels == 3


def test_new_data_is_checked_before_use(mdata, kwargs):
    SCDX.setup_mudata(mdata, **kwargs)
    model = SCDX(mdata)
    model.train_autoencoder(max_epochs=1, enable_progress_bar=False)
    bad = mdata.copy()
    for key in ("_scvi_uuid", "_scvi_manager_uuid"):
        bad.uns.pop(key)
    bad.obs = bad.obs.drop(columns=["_scvi_batch", "_scvi_labels"])
    x = bad["rna"].X.toarray()
    x[0, 0] = -3
    bad["rna"].X = sparse.csr_matrix(x)
    with pytest.raises(ValueError, match="negative values"):
        model.get_latent_representation(bad)
    with pytest.raises(TypeError, match="needs a MuData"):
        model.get_latent_representation(mdata["rna"])


def test_duplicated_feature_names(mdata, kwargs):
    names = mdata["accessibility"].var_names.tolist()
    names[5] = names[4]
    mdata["accessibility"].var_names = names
    with pytest.raises(ValueError, match=r"mdata.mod\['accessibility'\].*var_names_make_unique"):
        SCDX.setup_mudata(mdata, **kwargs)


def test_duplicated_cell_names(mdata, kwargs):
    names = mdata.obs_names.tolist()
    names[1] = names[0]
    for adata in mdata.mod.values():
        adata.obs_names = names
    mdata.obs_names = names
    with pytest.raises(ValueError, match=r"duplicated cell names.*obs_names_make_unique"):
        SCDX.setup_mudata(mdata, **kwargs)


def test_one_modality_registered_as_two_kinds(mdata):
    modalities = {"rna_layer": "rna", "atac_layer": "accessibility", "protein_layer": "rna"}
    with pytest.raises(ValueError, match=r"mdata.mod\['rna'\] as more than one kind"):
        SCDX.setup_mudata(mdata, modalities=modalities)


@pytest.mark.parametrize("column", ["_scvi_labels", "_scvi_batch", "_scvi_anything"])
def test_user_columns_that_scvi_would_overwrite(mdata, kwargs, column):
    mdata.obs[column] = "mine"
    with pytest.raises(ValueError, match=rf"\['{column}'\].*Rename"):
        SCDX.setup_mudata(mdata, **kwargs)
    assert (mdata.obs[column] == "mine").all()


def test_scvi_columns_as_obs_keys(mdata, kwargs):
    SCDX.setup_mudata(mdata, **kwargs)
    with pytest.raises(ValueError, match="labels_key='_scvi_batch'.*writes at registration"):
        SCDX.setup_mudata(mdata, **{**kwargs, "labels_key": "_scvi_batch"})
    SCDX.setup_mudata(mdata, **kwargs)  # registering the same object again is fine


def test_backed_mudata(mdata, kwargs, tmp_path):
    """A backed file registers without being read into memory; bad values are still found."""
    mdata.write(tmp_path / "data.h5mu")
    backed = md.read_h5mu(tmp_path / "data.h5mu", backed="r")
    SCDX.setup_mudata(backed, **kwargs)
    assert all(adata.isbacked for adata in backed.mod.values())
    mdata["rna"].X.data[0] = -1.0
    mdata.write(tmp_path / "bad.h5mu")
    with pytest.raises(ValueError, match="negative"):
        SCDX.setup_mudata(md.read_h5mu(tmp_path / "bad.h5mu", backed="r"), **kwargs)


def test_empty_data(mdata, kwargs):
    with pytest.raises(ValueError, match="no cells"):
        SCDX.setup_mudata(mdata[:0].copy(), **kwargs)
    no_genes = MuData({"rna": mdata["rna"][:, :0].copy(), "accessibility": mdata["accessibility"]})
    no_genes.obs = mdata.obs.copy()
    with pytest.raises(ValueError, match=r"mdata.mod\['rna'\] has no genes"):
        SCDX.setup_mudata(no_genes, **kwargs)


@pytest.mark.parametrize(
    ("kwargs_", "error", "match"),
    [({"layer": "counts"}, TypeError, "unexpected keyword argument"),
     ({"modalities": "rna"}, TypeError, "`modalities` must be a mapping"),
     ({"modalities": {"rna_layer": 0, "atac_layer": "accessibility"}}, TypeError, "name of a"),
     ({"observed_keys": ["atac"]}, TypeError, "`observed_keys` must be a mapping"),
     ({"observed_keys": {"atac": ["has_atac"]}}, TypeError, "observed_keys.*column name"),
     ({"labels_key": ["labels"]}, TypeError, "`labels_key` must be a column name"),
     ({"rna_layer": ["counts"]}, TypeError, "`rna_layer` must be a layer name")],
)  # fmt: skip
def test_bad_setup_arguments(mdata, kwargs, kwargs_, error, match):
    with pytest.raises(error, match=match):
        SCDX.setup_mudata(mdata, **{**kwargs, **kwargs_})


def test_float16_counts(make_mudata, setup_kwargs):
    mdata = make_mudata(MODS, sparse=False)
    mdata["rna"].X = mdata["rna"].X.astype(np.float16)
    SCDX.setup_mudata(mdata, **setup_kwargs(MODS))
    aligned, n_missing = align_features(mdata["rna"], mdata["rna"].var_names, "rna")
    assert n_missing == 0 and aligned.dtype == np.float32
    np.testing.assert_array_equal(aligned.toarray(), mdata["rna"].X.astype(np.float32))


@pytest.mark.parametrize("sparse_layer", [True, False])
def test_boolean_accessibility(make_mudata, setup_kwargs, sparse_layer):
    mdata = make_mudata(MODS, sparse=sparse_layer)
    mdata["accessibility"].X = mdata["accessibility"].X > 0
    SCDX.setup_mudata(mdata, **setup_kwargs(MODS))
    model = SCDX(mdata, architecture="small", n_channels=16)
    model.train_autoencoder(max_epochs=1, enable_progress_bar=False)
    assert np.isfinite(model.get_normalized_accessibility(return_numpy=True)).all()
