from __future__ import annotations

import contextlib
import io
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pytest
from cli_runner import run
from helpers import QUIET, SHARED_DATA, TINY, synthetic_mudata, synthetic_setup_kwargs

from scdx_scvi import cli
from scdx_scvi.model import SCDX

# ---------------------------------------------------------------- train / generate / translate

STARTER = (
    SHARED_DATA / "neurips2021_bmmc_multiome_starter" / "neurips2021_bmmc_multiome_starter.h5mu"
)
TINY_TRAINING = ["--architecture", "small", "--max-epochs", "2", "--diffusion-steps", "10"]


@pytest.fixture(scope="module")
def starter():
    if not STARTER.exists():
        pytest.fail(f"{STARTER} is missing: the tests need ../shared/data beside the repository.")
    return md.read_h5mu(STARTER)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, starter):
    """A model trained by ``scdx train`` with tiny settings, and what the command printed."""
    out = tmp_path_factory.mktemp("cli") / "model"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = run(
            "train", STARTER, "--out", out, "--labels-key", "cell_type", "--batch-key", "batch",
            *TINY_TRAINING, "--accelerator", "cpu", "--seed", "0",
        )  # fmt: skip
    assert status == 0
    return out, printed.getvalue()


@pytest.mark.slow
def test_train_prints_a_summary_and_saves_the_model_without_data(trained, starter):
    out, printed = trained
    assert "500 cells" in printed
    assert "rna ('rna'): 600 features" in printed
    assert "atac ('atac'): 600 features" in printed
    assert "labels 'cell_type': 21 categories" in printed
    assert "autoencoder 2 epochs" in printed
    for key in ("train_loss", "reconstruction_loss_atac_validation", "diffusion_loss_train"):
        assert key in printed
    assert f"model saved to {out}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["model.pt"]
    model = SCDX.load(out, accelerator="cpu")
    assert model.adata is None
    assert model.is_trained and model.is_diffusion_trained_
    assert model.modalities == ("rna", "atac")
    assert list(model.feature_names_["atac"]) == list(starter["atac"].var_names)


@pytest.mark.slow
def test_generate_writes_the_requested_cells(trained, starter, tmp_path, capsys):
    model_dir, _ = trained
    out = tmp_path / "new" / "cells.h5mu"
    args = ["generate", model_dir, "--labels", "CD8+ T=5, NK=3", "--out", out]
    assert run(*args, "--steps", "3", "--seed", "1", "--accelerator", "cpu") == 0
    printed = capsys.readouterr().out
    assert "generated 8 cells" in printed and "CD8+ T: 5" in printed and f"{out}" in printed
    cells = md.read_h5mu(out)
    assert set(cells.mod) == {"rna", "atac"}
    for mod in ("rna", "atac"):
        assert cells[mod].shape == (8, 600)
        assert list(cells[mod].var_names) == list(starter[mod].var_names)
    assert cells.obs["cell_type"].astype(str).tolist() == ["CD8+ T"] * 5 + ["NK"] * 3
    assert set(np.unique(cells["atac"].X.toarray())) <= {0.0, 1.0}
    rna = cells["rna"].X.toarray()
    np.testing.assert_array_equal(rna, np.round(rna))

    out = tmp_path / "drawn.h5mu"
    args = ["generate", model_dir, "--n-cells", "6", "--sampler", "ddim", "--steps", "2"]
    assert run(*args, "--out", out, "--accelerator", "cpu") == 0
    cells = md.read_h5mu(out)
    assert cells.n_obs == 6 and cells["atac"].n_vars == 600
    assert set(cells.obs["cell_type"].astype(str)) <= set(starter.obs["cell_type"].astype(str))


@pytest.mark.slow
def test_translate_anndata_and_mudata_queries(trained, starter, tmp_path, capsys):
    model_dir, _ = trained
    rna = starter["rna"][:40].copy()
    query = rna[:, rna.var_names[::-1]].copy()  # features are matched by name
    query.write_h5ad(tmp_path / "rna.h5ad")
    options = ["--sampler", "dpm++2m", "--steps", "3", "--seed", "2", "--accelerator", "cpu"]
    out = tmp_path / "atac.h5ad"
    args = ["translate", model_dir, tmp_path / "rna.h5ad", "--source", "rna", "--target", "atac"]
    assert run(*args, "--out", out, "--samples", "2", *options) == 0
    assert "translated 40 cells from rna to atac (600 features)" in capsys.readouterr().out
    atac = ad.read_h5ad(out)
    assert atac.shape == (40, 600)
    assert list(atac.var_names) == list(starter["atac"].var_names)
    assert list(atac.obs_names) == list(rna.obs_names)
    assert atac.obs["cell_type"].tolist() == rna.obs["cell_type"].tolist()
    assert ((atac.X >= 0) & (atac.X <= 1)).all()
    assert atac.layers["variance"].shape == (40, 600)
    assert atac.uns["scdx_translation"]["n_samples"] == 2

    # --layer: the same counts in a layer give the same translation
    layered = ad.AnnData(
        X=np.zeros(query.shape, np.float32), obs=query.obs, var=query.var,
        layers={"counts": query.X.copy()},
    )  # fmt: skip
    layered.write_h5ad(tmp_path / "layered.h5ad")
    args[2] = tmp_path / "layered.h5ad"
    out_layer = tmp_path / "atac_layer.h5ad"
    assert run(*args, "--out", out_layer, "--samples", "2", "--layer", "counts", *options) == 0
    np.testing.assert_allclose(ad.read_h5ad(out_layer).X, atac.X, rtol=1e-5, atol=1e-6)

    starter[:30].copy().write_h5mu(tmp_path / "query.h5mu")
    out = tmp_path / "rna_out.h5ad"
    args = ["translate", model_dir, tmp_path / "query.h5mu", "--source", "atac", "--target", "rna"]
    assert run(*args, "--out", out, *options) == 0
    translated = ad.read_h5ad(out)
    assert translated.shape == (30, 600)
    assert list(translated.var_names) == list(starter["rna"].var_names)
    assert list(translated.obs_names) == list(starter.obs_names[:30])
    assert np.isfinite(translated.X).all() and (translated.X >= 0).all()

    assert translated.uns["scdx_translation"]["expected"] == "log1p"
    out_counts = tmp_path / "rna_counts.h5ad"
    assert run(*args, "--out", out_counts, "--expected", "counts", *options) == 0
    np.testing.assert_allclose(ad.read_h5ad(out_counts).X.sum(1), 1e4, rtol=1e-3)

    out_backed = tmp_path / "rna_backed.h5ad"
    assert run(*args, "--out", out_backed, "--backed", *options) == 0
    np.testing.assert_allclose(ad.read_h5ad(out_backed).X, translated.X, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_train_backed_reads_from_disk(tmp_path, capsys):
    out = tmp_path / "model"
    assert run("train", STARTER, "--out", out, "--backed", *TINY_TRAINING, "--accelerator",
               "cpu") == 0  # fmt: skip
    assert "500 cells" in capsys.readouterr().out
    assert SCDX.load(out, accelerator="cpu").is_diffusion_trained_


def _errors(tmp_path, model_dir):
    absent = tmp_path / "absent"
    starter_train = ["train", STARTER, "--out", tmp_path / "m", *TINY_TRAINING]
    translate = ["translate", model_dir, STARTER, "--out", tmp_path / "t.h5ad"]
    return {
        "train missing file": (
            ["train", absent / "x.h5mu", "--out", tmp_path / "m"],
            "no such file",
        ),
        "train wrong obs key": (
            [*starter_train, "--labels-key", "celltype"],
            "`labels_key='celltype'` is not a column of mdata.obs",
        ),
        "train unknown modality": (
            [*starter_train, "--modalities", "rna=rna,atac=peaks"],
            "'peaks', but mdata has no such modality",
        ),
        "train unknown modality kind": (
            [*starter_train, "--modalities", "rna=rna,dna=atac"],
            "argument --modalities: unknown kind 'dna'",
        ),
        "train existing model": (["train", STARTER, "--out", model_dir], "already exists"),
        "generate unknown label": (
            ["generate", model_dir, "--labels", "Martian=3", "--out", tmp_path / "g.h5mu"],
            "Unknown label(s) ['Martian']",
        ),
        "generate bad labels": (
            ["generate", model_dir, "--labels", "NK", "--out", tmp_path / "g.h5mu"],
            "argument --labels: expected LABEL=N",
        ),
        "generate labels and n cells": (
            ["generate", model_dir, "--labels", "NK=2", "--n-cells", "3", "--out", "g.h5mu"],
            "not allowed with argument",
        ),
        "generate no cells": (
            ["generate", model_dir, "--n-cells", "0", "--out", tmp_path / "g.h5mu"],
            "argument --n-cells: expected a whole number of at least 1",
        ),
        "generate missing model dir": (
            ["generate", absent, "--n-cells", "3", "--out", tmp_path / "g.h5mu"],
            "no such model directory",
        ),
        "generate dir without a model": (
            ["generate", tmp_path, "--n-cells", "3", "--out", tmp_path / "g.h5mu"],
            "holds no saved model",
        ),
        "translate unknown modality": (
            [*translate, "--source", "dna", "--target", "atac"],
            "Unknown source modality 'dna'",
        ),
        "translate missing query": (
            [
                "translate",
                model_dir,
                absent / "q.h5ad",
                "--source",
                "rna",
                "--target",
                "atac",
                "--out",
                tmp_path / "t.h5ad",
            ],
            "no such file",
        ),  # fmt: skip
        "translate missing model dir": (
            [
                "translate",
                absent,
                STARTER,
                "--source",
                "rna",
                "--target",
                "atac",
                "--out",
                tmp_path / "t.h5ad",
            ],
            "no such model directory",
        ),  # fmt: skip
        "translate no source": ([*translate, "--target", "atac"], "--source"),
    }


ERROR_CASES = list(_errors(Path("x"), Path("y")))


@pytest.mark.slow
@pytest.mark.parametrize("case", ERROR_CASES)
def test_input_errors_exit_with_one_line(case, trained, tmp_path, capsys):
    argv, message = _errors(tmp_path, trained[0])[case]
    assert run(*argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"scdx {argv[0]}: error: ")
    assert message in last


def test_a_corrupt_model_gives_one_error_line(tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.pt").write_bytes(b"not a model")
    assert run("generate", broken, "--n-cells", "3", "--out", tmp_path / "g.h5mu") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"scdx generate: error: cannot load the model in {broken}")
    )


def test_generate_needs_a_trained_diffusion(tmp_path, capsys):
    mdata = synthetic_mudata(("rna", "atac"))
    SCDX.setup_mudata(mdata, **synthetic_setup_kwargs(("rna", "atac")))
    model = SCDX(mdata, **TINY)
    model.train_autoencoder(max_epochs=1, **QUIET)
    model.save(tmp_path / "autoencoder_only", save_anndata=False)
    args = ["generate", tmp_path / "autoencoder_only", "--n-cells", "3"]
    assert run(*args, "--out", tmp_path / "g.h5mu") == 2
    assert "has no trained diffusion stage" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "train", "generate", "translate"])
def test_help_documents_every_option(command, capsys):
    assert run(command, "--help") == 0
    text = capsys.readouterr().out
    _, commands = cli.build_parser()
    for action in commands[command]._actions:
        assert action.help, action.dest
        for flag in action.option_strings:
            assert flag in text
