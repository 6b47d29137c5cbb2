"""Smoke runs of the benchmark scripts (``--quick``) on the small shared data sets."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from scdx_scvi.metrics import FLOOR_NAMES, REFERENCE_NAME

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
DATA = BENCHMARKS.parents[1] / "shared" / "data"
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def run_script(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(BENCHMARKS / script), *args], check=True, cwd=BENCHMARKS)


def results_of(tmp_path: Path, script: str, *args: str) -> list[dict]:
    """Run ``script`` with ``args``, its JSON written to ``tmp_path``; return its result rows."""
    out = tmp_path / "results.json"
    run_script(script, *args, "--out", str(out))
    return json.loads(out.read_text())["results"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "other", "peer"),
    [
        ("neurips2021_bmmc_multiome_starter", "atac", "MultiVI"),
        ("neurips2021_bmmc_cite_starter", "protein", "totalVI"),
    ],
)
def test_run_writes_results_page_and_figures(tmp_path, dataset, other, peer):
    if not (DATA / dataset).exists():
        pytest.fail(
            f"{DATA / dataset} is missing: the tests need ../shared/data beside the repository."
        )
    saved = tmp_path / "models"
    run_script(
        "run.py", "--quick", "--dataset", dataset, "--out", str(tmp_path), "--save-dir", str(saved)
    )  # fmt: skip

    payload = json.loads((tmp_path / f"benchmark_{dataset}.json").read_text())
    assert payload["peer"] == peer
    assert {r["model"] for r in payload["training"]} == {"SCDX", peer}
    assert all(r["seconds"] > 0 for r in payload["training"])
    rows = payload["results"]
    for direction in (f"{other}->rna", f"rna->{other}"):
        models = {r["model"] for r in rows if r.get("direction") == direction}
        assert {"SCDX", "SCDX, one sample", "kNN regression", "mean profile"} <= models
        assert set(FLOOR_NAMES) <= models  # the floor of SCDX's own source latent
    # totalVI does not translate protein -> RNA; every other pairing has the peer
    assert peer in {r["model"] for r in rows if r.get("direction") == f"rna->{other}"}
    for m in ("rna", other):
        models = {r["model"] for r in rows if r.get("modality") == m}
        assert models == {
            "SCDX", "SCDX autoencoder reconstructions", f"{peer} posterior samples",
            "real training cells",
        }  # fmt: skip
        scdx = next(r for r in rows if r.get("modality") == m and r["model"] == "SCDX")
        assert 0 <= scdx["classifier_auc"] <= 1 and scdx["cells_per_second"] > 0
        assert scdx["diagnostics"]["library_size_median_ratio"] > 0

    page = (tmp_path / f"{dataset}.md").read_text()
    assert f"| measure | SCDX | {peer} | SCDX / {peer} |" in page
    assert "## Where SCDX loses" in page
    assert "`scdx_scvi.metrics.latent_floor`" in page
    assert "| held-out cells |" in page  # the profile diagnostics
    assert {"configuration", "max_epochs", "max_steps_diffusion"} <= set(payload["training"][0])
    figures = sorted(p.name for p in (tmp_path / dataset).glob("*.png"))
    assert figures == sorted(
        ["umap_rna.png", f"umap_{other}.png", f"per_feature_{other}_to_rna.png",
         f"per_feature_rna_to_{other}.png"]
    )  # fmt: skip
    for name in figures:
        assert f"]({dataset}/{name})" in page
    check_summary(tmp_path, dataset, other)
    check_sampling(tmp_path, dataset, other, saved)


def check_sampling(folder: Path, dataset: str, other: str, models: Path) -> None:
    """``sampling.py`` scores the saved model's cells per sampler setting."""
    out = folder / "sampling.json"
    run_script(
        "sampling.py", "--dataset", dataset, "--load-dir", str(models), "--settings",
        "dpm++2m:4:1", "ddim:4:2", "--n-comps", "10", "--generation-seeds", "2", "--out", str(out),
        "--generation-depths", "latent_atac", "label",
    )  # fmt: skip
    rows = json.loads(out.read_text())["results"]
    evaluations = [(r["sampler"], r["denoiser_evaluations"], r["generation_depth"]) for r in rows]
    assert evaluations == [  # guidance doubles the evaluations
        ("dpm++2m", 4, "latent_atac"), ("dpm++2m", 4, "label"),
        ("ddim", 8, "latent_atac"), ("ddim", 8, "label"),
    ]  # fmt: skip
    for row in rows:
        assert row["cells_per_second"] > 0
        for m in ("rna", other):
            assert 0 <= row[m]["classifier_auc"] <= 1 and 0 <= row[m]["real_vs_real_auc"] <= 1
    run_script(
        "sampling.py", "--dataset", dataset, "--load-dir", str(models), "--settings",
        "dpm++2m:2:1", "--n-comps", "10", "--generation-seeds", "1", "--out", str(out),
        "--retrain-diffusion", "--n-channels", "8", "--diffusion-steps", "3", "--translate",
    )  # fmt: skip
    rows = json.loads(out.read_text())["results"]
    assert [r.get("translation") for r in rows] == [f"{other}->rna", f"rna->{other}", None]
    for row in rows:
        assert row["diffusion"] | {"seconds": 0} == {
            "retrained": True,
            "steps": 3,
            "n_channels": 8,
            "seconds": 0,
        }
    headline = "auroc_per_peak" if other == "atac" else "pearson_per_feature"
    assert -1 <= rows[1][headline] <= 1 and 0 <= rows[2]["rna"]["classifier_auc"] <= 1


def check_summary(folder: Path, dataset: str, other: str) -> None:
    """``summary.py`` rewrites the marked block of a page and the run's page from the JSON."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import summary
    finally:
        sys.path.remove(str(BENCHMARKS))
    page = folder / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\n{summary.BEGIN}\nstale\n{summary.END}\n\nkept\n")
    (folder / f"{dataset}.md").unlink()
    summary.update(folder, page, folder)

    text = page.read_text()
    assert "stale" not in text and text.endswith("\n\nkept\n")
    rows = json.loads((folder / f"benchmark_{dataset}.json").read_text())["results"]
    key = "auroc_per_peak" if other == "atac" else "pearson_per_feature"
    scdx = next(r for r in rows if r.get("direction") == f"rna->{other}" and r["model"] == "SCDX")
    target = "ATAC" if other == "atac" else "protein"
    line = next(x for x in text.splitlines() if x.startswith(f"| {dataset} | RNA → {target} |"))
    assert f"{scdx[key]:.3f}" in line
    assert f"| {dataset} | {target} | " in text  # generation
    assert f"| {dataset} | " in text.split("**Cost**")[1]
    assert f"]({dataset}/umap_rna.png)" in (folder / f"{dataset}.md").read_text()

    page.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="no summary markers"):
        summary.update(folder, page, folder)


@pytest.mark.slow
def test_scaling_quick(tmp_path):
    rows = results_of(tmp_path, "scaling.py", "--quick", "--peer")
    assert [(r["phase"], r["model"]) for r in rows] == [
        ("autoencoder", "SCDX"), ("diffusion", "SCDX"), ("generate", "SCDX"),
        ("autoencoder", "MultiVI"), ("autoencoder", "MultiVI"),
    ]  # fmt: skip
    policies = [r["freed_memory"] for r in (rows[0], *rows[-2:])]
    assert policies == (["release", None, "retain"] if GLIBC else [None, None, None])
    assert all(r["peak_mib"] >= 0 and r["seconds"] > 0 for r in rows)
    assert rows[2]["n_generated"] == 500
    assert rows[0]["architecture"] == "small"  # the package default
    assert not rows[0]["backed"]
    assert rows[0]["atac_hidden"] == "512,256"  # 2,000 peaks: the preset's widths
    assert "atac_hidden" not in rows[-1] and "architecture" not in rows[-1]  # MultiVI's row


@pytest.mark.slow
def test_freed_memory_quick(tmp_path):
    rows = results_of(
        tmp_path, "freed_memory.py", "--dataset", "neurips2021_bmmc_multiome_starter",
        "--epochs", "1", "--repeats", "1",
    )  # fmt: skip
    assert [r["run"] for r in rows] == ["release", "retain", "none", "MultiVI"]
    assert all(r["seconds"] > 0 and r["peak_mib"] >= 0 and r["epochs"] == 1 for r in rows)


@pytest.mark.slow
def test_scaling_quick_backed(tmp_path):
    rows = results_of(tmp_path, "scaling.py", "--quick", "--backed")
    assert [r["phase"] for r in rows] == ["autoencoder", "diffusion", "generate"]
    assert all(r["backed"] and r["seconds"] > 0 for r in rows)
    assert rows[0]["atac_nnz"] > 0 and rows[2]["n_generated"] == 500


@pytest.mark.slow
def test_out_of_core_quick(tmp_path):
    out = tmp_path / "out_of_core.json"
    run_script("out_of_core.py", "--quick", "--dir", str(tmp_path), "--out", str(out))
    payload = json.loads(out.read_text())
    rows = payload["results"]
    assert [r["phase"] for r in rows] == ["setup", "autoencoder", "diffusion", "translate"]
    assert rows[1]["steps"] == 5 and rows[3]["n_cells"] == 500
    assert payload["file_gib"] > 0 and set(payload["in_memory_counts_mib"]) == {"rna", "atac"}
    assert not list(tmp_path.glob("*/cells.h5mu"))  # the file is removed


@pytest.mark.slow
def test_gpu_quick_on_cpu(tmp_path):
    rows = results_of(tmp_path, "gpu.py", "--quick", "--allow-cpu")
    tasks = [(r.get("task") or r["phase"], r.get("model"), r.get("direction")) for r in rows]
    assert tasks[:2] == [("training", "SCDX", None), ("training", "MultiVI", None)]
    assert ("translation", "MultiVI", "atac->rna") in tasks
    assert [r["phase"] for r in rows[-4:]] == ["autoencoder", "diffusion", "generate",
                                                "MultiVI epoch"]  # fmt: skip
    assert all(r["seconds"] > 0 for r in rows)


@pytest.mark.slow
def test_step_cost_quick(tmp_path):
    (row,) = results_of(
        tmp_path, "step_cost.py", "--n-peaks", "3000", "--n-cells", "200", "--repeats", "1"
    )  # fmt: skip
    keys = ["forward_backward", "optimizer_loop", "optimizer_foreach", "optimizer_fused",
            "first_layer_dense", "first_layer_sparse"]  # fmt: skip
    keys += ["forward_backward_retained"] if GLIBC else []
    assert all(row[k] > 0 for k in keys) and row["n_peaks"] == 3000


@pytest.mark.slow
def test_metrics_scaling_quick(tmp_path):
    rows = results_of(tmp_path, "metrics_scaling.py", "--quick")
    assert len(rows) == 16 and all(r["seconds"] > 0 and r["n_cells"] == 600 for r in rows)
    assert {r["metric"] for r in rows if "dense_pairwise_mib" in r} == {
        "foscttm", "mmd_rbf", "energy_distance"
    }  # fmt: skip


@pytest.mark.slow
def test_dispersion_quick(tmp_path):
    rows = results_of(
        tmp_path, "dispersion.py", "--dataset", "scvi_pbmc_cite_tests", "--dispersion-lr", "none",
        "0.1", "--max-epochs", "2", "--generation-seeds", "1",
    )  # fmt: skip
    assert [r["dispersion_lr"] for r in rows] == [None, 0.1]
    for row in rows:
        for m in ("rna", "protein"):
            assert 0.0 <= row[m]["classifier_auc"] <= 1.0
            assert 0.0 <= row[m]["real_vs_real_auc"] <= 1.0
            assert row[m]["dispersion_quantiles"]["5%"] <= row[m]["dispersion_quantiles"]["95%"]


@pytest.mark.slow
def test_autoencoder_dropout_quick(tmp_path):
    rows = results_of(
        tmp_path, "autoencoder_dropout.py", "--dataset", "scvi_pbmc_cite_tests", "--dropout-rate",
        "0", "0.1", "--encoder-input", "log1p", "--max-epochs", "2", "--generation-seeds", "1",
    )  # fmt: skip
    assert [r["dropout_rate"] for r in rows] == [0.0, 0.1]
    assert all(r["encoder_input"] == "log1p" and r["reconstruction_weights"] == "sum" for r in rows)
    for row in rows:
        assert set(row["floor"]) == {"rna->protein", "protein->rna"}
        for m in ("rna", "protein"):
            assert -1.0 <= row["reconstruction"][m] <= 1.0
            assert set(row["draw_auc"][m]) == {"held-out draws", "training draws", REFERENCE_NAME}
            assert all(0.0 <= v <= 1.0 for v in row["draw_auc"][m].values())


def _rna_likelihood_module():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import rna_likelihood
    finally:
        sys.path.remove(str(BENCHMARKS))
    return rna_likelihood


def test_rna_likelihood_variants_reduce_to_the_negative_binomial():
    """With no extra zeros / no per-cell offset, both variants score as the package's NB."""
    import torch

    from scdx_scvi.module import CountLikelihood

    variants = _rna_likelihood_module()
    torch.manual_seed(0)
    mean_logits, library = torch.randn(4, 6), torch.full((4, 1), 50.0)
    counts = torch.poisson(torch.full((4, 6), 8.0))
    package = CountLikelihood(6)
    expected = package.distribution(mean_logits, library).log_prob(counts)
    for cls, second in (
        (variants.ZeroInflatedCountLikelihood, torch.full((4, 6), -30.0)),
        (variants.GeneCellCountLikelihood, torch.zeros(4, 6)),
    ):
        lik = cls(6)
        lik.log_theta.data.copy_(package.log_theta.data)
        logits = torch.cat([mean_logits, second], dim=-1)
        torch.testing.assert_close(lik.distribution(logits, library).log_prob(counts), expected)
        torch.testing.assert_close(
            lik.normalized(logits, 1e4), package.normalized(mean_logits, 1e4)
        )
        torch.testing.assert_close(
            lik.expected_log1p(logits, library, 1e4),
            package.expected_log1p(mean_logits, library, 1e4),
            atol=1e-4,
            rtol=1e-4,
        )
    # extra zeros lower the expected log1p value by the probability of a zero
    zinb = variants.ZeroInflatedCountLikelihood(6)
    half = torch.cat([mean_logits, torch.zeros(4, 6)], dim=-1)
    nb = CountLikelihood(6)
    nb.log_theta.data.copy_(zinb.log_theta.data)
    torch.testing.assert_close(
        zinb.expected_log1p(half, library, 1e4), 0.5 * nb.expected_log1p(mean_logits, library, 1e4)
    )


@pytest.mark.slow
def test_rna_likelihood_quick(tmp_path):
    out = tmp_path / "results.json"
    run_script(
        "rna_likelihood.py", "--variant", "gene-cell", "--script", "autoencoder_dropout", "--",
        "--dataset", "scvi_pbmc_cite_tests", "--dropout-rate", "0", "--max-epochs", "2",
        "--generation-seeds", "1", "--out", str(out),
    )  # fmt: skip
    payload = json.loads(out.read_text())
    assert payload["rna_likelihood"] == "gene-cell"
    assert payload["command"].startswith("python benchmarks/rna_likelihood.py --variant gene-cell")
    (row,) = payload["results"]
    assert all(0.0 <= v <= 1.0 for v in row["draw_auc"]["rna"].values())


def test_measured_repeats_give_the_median_time_and_the_first_result():
    """``measured(fn, repeats)`` runs ``fn`` that often; one slow run does not set the time."""
    import time

    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _common import measured
    finally:
        sys.path.remove(str(BENCHMARKS))
    delays = iter([0.3, 0.0, 0.01])
    calls = []

    def fn():
        calls.append(1)
        time.sleep(next(delays))
        return len(calls)

    result, seconds, peak = measured(fn, repeats=3)
    assert result == 1 and len(calls) == 3
    assert 0.01 <= seconds < 0.3 and peak >= 0


def test_measured_together_takes_turns_and_gives_each_call_its_median():
    """Compared calls alternate, round by round; each keeps its first result and median time."""
    import time

    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _common import measured_together
    finally:
        sys.path.remove(str(BENCHMARKS))
    order = []

    def call(name, delays):
        def fn():
            order.append(name)
            time.sleep(delays[len([n for n in order if n == name]) - 1])
            return f"{name}{len(order)}"

        return fn

    runs = measured_together(
        {"a": call("a", [0.2, 0.0, 0.0]), "b": call("b", [0.0, 0.02, 0.02])}, 3
    )
    assert order == ["a", "b"] * 3
    assert runs["a"][0] == "a1" and runs["b"][0] == "b2"
    assert runs["a"][1] < 0.1 and 0.02 <= runs["b"][1] < 0.2 and runs["b"][2] >= 0
    # with a warm-up, a slow first call is neither timed nor kept apart from its result
    order.clear()
    runs = measured_together(
        {"a": call("a", [0.3, 0.3, 0.0, 0.0]), "b": call("b", [0.0] * 4)}, 3, warmup=True
    )
    assert order == ["a", "b"] * 4
    assert runs["a"][0] == "a1" and runs["b"][0] == "b2"
    assert runs["a"][1] < 0.2  # the median of 0.3, 0.0, 0.0: the untimed 0.3 is left out


@pytest.mark.slow
def test_translation_gap_quick(tmp_path):
    """``translation_gap.py`` scores every row of each direction, the floor included."""
    rows = results_of(
        tmp_path, "translation_gap.py", "--quick", "--dataset", "scvi_pbmc_cite_tests"
    )
    for direction in ("protein->rna", "rna->protein"):
        names = {r["row"] for r in rows if r["direction"] == direction}
        assert {"translation", *FLOOR_NAMES, "ridge target latent, decoded"} <= names
        assert {"decoder-aware linear map, decoded", "own target latent, decoded"} <= names
    assert all(-1 <= r["score"] <= 1 for r in rows)


@pytest.mark.slow
def test_count_draws_quick(tmp_path):
    """``count_draws.py`` scores every way of drawing counts beside the floor and the ceiling."""
    floors, *rows = results_of(
        tmp_path, "count_draws.py", "--quick", "--dataset", "neurips2021_bmmc_cite_starter"
    )
    assert floors["variant"] is None and "atac" not in floors
    for m in ("rna", "protein"):
        assert 0 <= floors[m]["real_vs_real_auc"] <= 1
        assert 0 <= floors[m]["reconstruction_draws_auc"] <= 1
    assert [r["variant"] for r in rows] == [
        "likelihood", "given_library", "poisson", "dispersion_x0.5", "dispersion_x2",
        "lognormal_libraries", "training_cells",
    ]  # fmt: skip
    assert all(0 <= r[m]["classifier_auc"] <= 1 for r in rows for m in ("rna", "protein"))
    # the package's default takes the training cells' library sizes; the log-normal differs
    library = {r["variant"]: r["protein"]["diagnostics"]["library_size_median"] for r in rows}
    assert library["training_cells"] == library["likelihood"] != library["lognormal_libraries"]
    for r in [floors, *rows]:  # RNA and protein library sizes: a rank correlation
        assert -1 <= r["library_correlation"] <= 1
    assert -1 <= floors["library_correlation_training"] <= 1


@pytest.mark.slow
def test_rare_types_quick(tmp_path):
    """``rare_types.py`` scores each type's generated cells beside the held-out cells'."""
    held_out, *generated = results_of(
        tmp_path, "rare_types.py", "--quick", "--dataset", "neurips2021_bmmc_cite_starter"
    )
    types = set(held_out["n_train"])
    assert held_out["set"] == "held-out cells" and set(held_out["recall"]) == {"rna", "protein"}
    assert [r["guidance_scale"] for r in generated] == [1.0, 2.0]
    for row in generated:  # every training type generated and scored, in every modality
        for recall in row["recall"].values():
            assert set(recall) == types
            assert all(0.0 <= v <= 1.0 for v in recall.values())
