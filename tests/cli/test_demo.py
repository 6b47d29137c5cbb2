from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import anndata as ad
import matplotlib.image
import mudata as md
import numpy as np
import pytest
from cli_runner import run
from helpers import SHARED_DATA

from scdx_scvi import SCDX, cli
from scdx_scvi.cli import DemoConfig, run_demo
from scdx_scvi.datasets import simulate_multiome
from scdx_scvi.metrics import held_out_mask, knn_prediction, log_cp10k, pearson_per_feature

SIZES = {"n_cells": 160, "n_genes": 60, "n_peaks": 150}
TINY_DEMO = {**SIZES, "max_epochs": 2, "diffusion_steps": 20, "n_channels": 16}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo run once on a tiny simulation, with what it printed."""
    out = tmp_path_factory.mktemp("demo") / "demo_output"
    config = DemoConfig(out=out, accelerator="cpu", progress=False, **TINY_DEMO)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = run_demo(config)
    data, _ = simulate_multiome(**SIZES, seed=0)
    held_out = data[held_out_mask(data.n_obs, 0)].copy()
    train = data[~held_out_mask(data.n_obs, 0)].copy()
    return result, printed.getvalue(), train, held_out


@pytest.mark.slow
def test_demo_writes_every_output_and_they_load(demo_run):
    result, _, train, held_out = demo_run
    out = result.out
    expected = [
        "model/",
        "generated.h5mu",
        "translated_rna.h5ad",
        "translated_atac.h5ad",
        "figures/pearson_per_gene_scdx_vs_knn.png",
        "figures/umap_atac.png",
        "figures/umap_rna.png",
        "metrics.json",
        "report.md",
    ]
    assert result.files == expected
    for name in expected:
        assert (out / name).exists(), name

    model = SCDX.load(out / "model", accelerator="cpu")
    assert model.is_trained and model.is_diffusion_trained_
    assert list(model.feature_names_["atac"]) == list(train["atac"].var_names)

    generated = md.read_h5mu(out / "generated.h5mu")
    assert generated.n_obs == held_out.n_obs  # the held-out cell types, as many cells
    for mod in ("rna", "atac"):
        assert list(generated[mod].var_names) == list(train[mod].var_names)
    assert sorted(generated.obs["cell_type"].astype(str)) == sorted(
        held_out.obs["cell_type"].astype(str)
    )
    assert set(np.unique(generated["atac"].X.toarray())) <= {0.0, 1.0}

    for name in ("umap_rna", "umap_atac", "pearson_per_gene_scdx_vs_knn"):
        image = matplotlib.image.imread(out / "figures" / f"{name}.png")
        assert image.ndim == 3 and min(image.shape[:2]) > 300
        assert image[..., :3].std() > 0.05  # something was drawn


@pytest.mark.slow
def test_translated_cells_have_the_training_features(demo_run):
    result, _, train, held_out = demo_run
    rna = ad.read_h5ad(result.out / "translated_rna.h5ad")
    atac = ad.read_h5ad(result.out / "translated_atac.h5ad")
    assert rna.shape == (held_out.n_obs, train["rna"].n_vars)
    assert atac.shape == (held_out.n_obs, train["atac"].n_vars)
    assert list(rna.var_names) == list(train["rna"].var_names)
    assert list(atac.var_names) == list(train["atac"].var_names)
    assert list(rna.obs_names) == list(held_out.obs_names)
    assert rna.obs["cell_type"].tolist() == held_out.obs["cell_type"].tolist()
    # expm1 of the expected log1p(counts per 10k): below the expected counts, which sum to 10k
    assert np.isfinite(rna.X).all() and (rna.X >= 0).all() and (rna.X.sum(axis=1) < 1e4).all()
    assert rna.uns["scdx_translation"]["expected"] == "log1p"
    assert ((atac.X >= 0) & (atac.X <= 1)).all()  # probabilities
    assert rna.uns["scdx_translation"]["source_modality"] == ["atac"]
    assert atac.uns["scdx_translation"]["source_modality"] == ["rna"]


@pytest.mark.slow
def test_metrics_are_finite_and_match_the_outputs(demo_run):
    result, _, train, held_out = demo_run
    metrics = json.loads((result.out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert metrics["data"]["n_held_out"] == held_out.n_obs
    assert metrics["data"]["n_train"] == train.n_obs
    # what ran, read from the model's histories (early stopping cannot stop in 2 epochs)
    assert metrics["training"]["autoencoder_epochs"] == 2
    assert metrics["training"]["diffusion_steps"] == 20
    assert metrics["training"]["diffusion_epochs"] >= 1
    # a smaller budget than the package defaults, and the report says so
    assert not metrics["training"]["package_defaults"]
    assert metrics["training"]["n_channels"] == 16 and metrics["training"]["architecture"]
    assert "not the model of record" in (result.out / "report.md").read_text()

    translation = metrics["translation"]
    assert set(translation) == {"ATAC->RNA", "RNA->ATAC"}
    methods = {"SCDX", "kNN regression", "ridge regression", "mean profile"}
    for entry in translation.values():
        assert set(entry["scores"]) == methods
        for scores in entry["scores"].values():
            assert scores and all(v is None or math.isfinite(v) for v in scores.values())
    rna, atac = translation["ATAC->RNA"]["scores"], translation["RNA->ATAC"]["scores"]
    # a constant prediction: no per-gene correlation, chance-level AUROC and AUPRC
    assert abs(rna["mean profile"]["pearson_per_feature"]) < 1e-9
    assert atac["mean profile"]["auroc_per_peak"] == pytest.approx(0.5)
    chance = translation["RNA->ATAC"]["chance"]["auprc_per_peak"]
    assert atac["mean profile"]["auprc_per_peak"] == pytest.approx(chance)

    # the reported numbers are those of the files and of the controls
    predicted = ad.read_h5ad(result.out / "translated_rna.h5ad").X
    truth = log_cp10k(held_out["rna"].X)
    scdx = pearson_per_feature(truth, np.log1p(predicted)).mean()
    assert rna["SCDX"]["pearson_per_feature"] == pytest.approx(scdx)
    knn = knn_prediction(train["atac"].X, train["rna"].X, held_out["atac"].X, "atac", "rna")
    knn_score = pearson_per_feature(truth, np.log1p(knn)).mean()
    assert rna["kNN regression"]["pearson_per_feature"] == pytest.approx(knn_score)

    generation = metrics["generation"]
    assert set(generation) == {"rna", "atac"}
    for scores in generation.values():
        assert set(scores) == {"SCDX", "real training cells"}
        for name in ("SCDX", "real training cells"):
            values = scores[name]
            for key in ("mmd_rbf", "energy_distance", "classifier_auc", "mixing"):
                assert math.isfinite(values[key]), key
            # both sets scored at the same size: all held-out cells
            assert values["n_real"] == values["n_generated"] == held_out.n_obs
            assert 0 <= values["classifier_auc"] <= 1 and 0 <= values["mixing"] <= 1
        # the floor: two real samples are hard to tell apart
        assert abs(scores["real training cells"]["classifier_auc"] - 0.5) < 0.15


@pytest.mark.slow
def test_report_has_the_tables_with_the_controls(demo_run):
    result, printed, _, _ = demo_run
    report = (result.out / "report.md").read_text()
    header = (
        "| direction | metric | better | SCDX | kNN regression | ridge regression | mean profile |"
    )
    assert header in report
    translation = result.metrics["translation"]
    for direction, metric, key in (
        ("ATAC->RNA", "Pearson per gene", "pearson_per_feature"),
        ("ATAC->RNA", "Pearson per cell", "pearson_per_cell"),
        ("RNA->ATAC", "AUROC per peak", "auroc_per_peak"),
        ("RNA->ATAC", "AUPRC per peak", "auprc_per_peak"),
    ):
        scores = translation[direction]["scores"]
        values = [f"{scores[m][key] + 0.0:.3f}".replace("-0.000", "0.000") for m in scores]
        assert f"| {direction} | {metric} | higher | {' | '.join(values)} |" in report
        assert metric in printed
    assert "| modality | metric | better | SCDX generated | real-vs-real floor |" in report
    for metric in ("MMD (RBF kernel)", "energy distance", "real-vs-generated AUC", "kNN mixing"):
        assert f"| RNA | {metric} |" in report and f"| ATAC | {metric} |" in report
        assert f"- **{metric}**:" in report  # what it means
    for figure in ("umap_rna", "umap_atac", "pearson_per_gene_scdx_vs_knn"):
        assert f"](figures/{figure}.png)" in report
    assert "simulate_multiome" in report and "held out" in report
    assert "kNN regression" in printed and "mean profile" in printed


# ------------------------------------------------------------------ command line and errors


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "small.h5mu"
    simulate_multiome(n_cells=40, n_genes=20, n_peaks=30, seed=1)[0].write_h5mu(path)
    return path


def _last_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_demo_with_a_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.h5mu"
    assert run("demo", "--data", missing, "--out", tmp_path / "out") == 2
    assert _last_error_line(capsys) == f"scdx demo: error: no such file: {missing}"
    assert not (tmp_path / "out").exists()  # a failed demo removes the folder it created
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert run("demo", "--data", missing, "--out", kept) == 2
    assert (kept / "notes.txt").read_text() == "mine"  # a folder that existed stays


def test_demo_with_a_wrong_labels_key(small_file, tmp_path, capsys):
    assert run("demo", "--data", small_file, "--labels-key", "celltype", "--out", tmp_path) == 2
    line = _last_error_line(capsys)
    assert line.startswith("scdx demo: error: small.h5mu has no obs column 'celltype'")
    assert "cell_type" in line and "batch" in line  # the columns it has


def test_demo_with_a_file_without_atac_or_protein(small_file, tmp_path, capsys):
    mdata = md.read_h5mu(small_file)
    rna_only = md.MuData({"rna": mdata["rna"], "spliced": mdata["rna"].copy()})
    path = tmp_path / "rna_only.h5mu"
    rna_only.write_h5mu(path)
    assert run("demo", "--data", path, "--out", tmp_path / "out") == 2
    line = _last_error_line(capsys)
    assert "needs an RNA modality and an ATAC (or protein) modality" in line
    assert "['rna', 'spliced']" in line


def test_demo_with_a_file_that_is_not_h5mu(tmp_path, capsys):
    path = tmp_path / "cells.h5mu"
    path.write_text("cell,gene\n")
    assert run("demo", "--data", path, "--out", tmp_path / "out") == 2
    assert _last_error_line(capsys).startswith(f"scdx demo: error: cannot read {path}")


def test_demo_options_reach_the_settings(tmp_path):
    parser, _ = cli.build_parser()
    data = SHARED_DATA / "snareseq_mop" / "snareseq_mop.h5mu"
    args = parser.parse_args(
        ["demo", "--data", str(data), "--labels-key", "cell_type", "--out", str(tmp_path),
         "--max-epochs", "7", "--diffusion-steps", "30", "--n-generate", "50", "--seed", "4",
         "--accelerator", "cpu", "--no-progress"]
    )  # fmt: skip
    config = cli.demo_config(args)
    assert config.progress is False and config.figures is True
    assert config.data == data and config.labels_key == "cell_type" and config.out == tmp_path
    assert (config.max_epochs, config.diffusion_steps, config.n_generate) == (7, 30, 50)
    assert config.seed == 4 and config.accelerator == "cpu" and not config.progress
    defaults = cli.demo_config(parser.parse_args(["demo"]))
    assert defaults == DemoConfig()
    assert defaults.out == Path("demo_output") and defaults.data is None
