"""The benchmark of record on one dataset: SCDX beside its scvi-tools peer and two controls.

In one process and on the canonical split (test cells: ``np.random.default_rng(0).random(n_obs)
< 0.2``), SCDX (``SCDX(mdata)`` and ``model.train()``: the package defaults, unless options are
given), the peer (MultiVI for RNA+ATAC, totalVI for RNA+protein) and the controls (mean profile,
kNN regression with k = 15, ridge regression) are fitted on the same training cells and scored
on the held-out cells:

* translation both ways, from an AnnData holding only the source modality (the user's call),
  beside the floor of SCDX's own source latent (kNN and ridge from it to the target, which the
  translation must reach to use its source):
  Pearson and Spearman per feature, per cell and overall and RMSE on log1p CP10k (RNA, protein);
  per-peak and flattened AUROC/AUPRC with the prevalence (ATAC); for every target FOSCTTM and
  the accuracy of a kNN classifier trained on real training cells at recovering the translated
  cells' types, both in a PCA fitted on the training cells' target modality;
* generation of as many cells per type as the test set has (SCDX) against the autoencoder's
  reconstruction draws of the test cells (the ceiling its decoder sets), the peer's posterior
  samples of the test cells and real training cells of the same composition (the real-vs-real
  floor), each compared with the test cells by ``scdx_scvi.metrics.generation_score_set`` (one
  embedding fitted on both sets, cross-validated classifier, ten draws): multi-scale RBF MMD,
  energy distance, random-forest real-vs-generated AUC, kNN mixing, kNN label recovery, the
  median per-cell-type MMD and the profile diagnostics (library size, detected features,
  per-feature statistics);
* cost: training wall-clock, translation and generation throughput and peak memory, each also
  as the ratio SCDX / peer (translation and generation run once untimed and then
  ``TIMING_REPEATS`` times each, the models compared taking turns: the median seconds, the
  largest peak).

Writes ``benchmarks/results/benchmark_<dataset>.json`` and the page ``docs/benchmarks/<dataset>.md``
with its PNG figures in ``docs/benchmarks/<dataset>/``, stamped with the commit, the hardware and
the command, and refreshes the summary across data sets on ``docs/benchmarks.md``
(``summary.py``). ``--out DIR`` puts the JSON, page and figures in DIR and leaves the docs alone.

Usage::

    python benchmarks/run.py --dataset snareseq_mop
    python benchmarks/run.py --dataset snareseq_mop --configuration reference --ae-epochs 25
    python benchmarks/run.py --quick --out /tmp/bench     # a smoke run on a starter set
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import mudata as md
import numpy as np
import scvi
from _common import (
    RESULTS,
    Results,
    condition_timesteps,
    generation_request,
    labels_of,
    measured,
    measured_together,
    provenance,
    read,
    retrain_diffusion,
    split,
)
from _report import DISPLAY, GROUPED, write_page
from generation import multivi_posterior_samples
from scipy import sparse
from summary import update as update_summary
from translation import multivi_translate, totalvi_rna_to_protein

from scdx_scvi import SCDX
from scdx_scvi.diffusion import SAMPLERS
from scdx_scvi.metrics import (
    REFERENCE_NAME,
    generation_score_set,
    joint_embedding,
    latent_floor,
    reference_sample,
    translation_controls,
    translation_directions,
    translation_score_set,
)
from scdx_scvi.metrics._tasks import GENERATION_SEEDS
from scdx_scvi.pl import feature_scatter, umap_real_vs_generated

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks"
SCDX_NAME, SAMPLE_NAME = "SCDX", "SCDX, one sample"
#: The default estimate with ``expected="counts"`` (RNA and protein targets).
COUNTS_NAME = "SCDX, expected counts"
#: The autoencoder's reconstruction draws of the test cells: the realism ceiling of the decoder.
CEILING_NAME = "SCDX autoencoder reconstructions"
#: One sample per cell instead of the default conditional-mean estimate.
SAMPLE = {"sampler": "dpm++2m"}  # the package default of steps
#: Runs of each timed translation and generation call (median seconds; a busy machine's one
#: slow run does not decide a throughput ratio).
TIMING_REPEATS = 3


# ----------------------------------------------------------------------------- set-up


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (or ``argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_mop")
    parser.add_argument("--labels-key", default="cell_type", help="'' for none")
    parser.add_argument(
        "--configuration", default="scdx", choices=["scdx", "reference"],
        help="SCDX(mdata, configuration=...); the options below override it when given",
    )  # fmt: skip
    default = " (default: the configuration's)"
    parser.add_argument("--architecture", default=None, help="autoencoder preset" + default)
    parser.add_argument("--n-channels", type=int, default=None, help="U-Net base width" + default)
    parser.add_argument("--ae-epochs", type=int, default=None, help="maximum epochs" + default)
    parser.add_argument(
        "--ae-early-stopping", default=None, choices=["on", "off", "per_modality"],
        help="stage-1 early stopping" + default,
    )  # fmt: skip
    parser.add_argument("--diffusion-steps", type=int, default=None, help="maximum steps" + default)
    parser.add_argument("--lr", type=float, default=None, help="diffusion learning rate" + default)
    parser.add_argument("--latent-scaling", default=None, choices=["scalar", "per_dim"])
    parser.add_argument("--protein-likelihood", default=None, choices=["nb", "nb_mixture"])
    parser.add_argument("--peer-epochs", type=int, default=100)
    parser.add_argument(
        "--generation-steps", type=int, default=None, help="dpm++2m steps (default: the package's)"
    )
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="scvi-tools seed of the training")
    parser.add_argument(
        "--generation-seeds", type=int, default=len(GENERATION_SEEDS),
        help="draws of the generation scores (subsample, embedding, folds)",
    )  # fmt: skip
    parser.add_argument("--save-dir", default=None, help="save the trained models here")
    parser.add_argument(
        "--load-dir", default=None,
        help="score the models of an earlier --save-dir again (its training records are kept)",
    )  # fmt: skip
    parser.add_argument(
        "--retrain-diffusion", action="store_true",
        help="with --load-dir: train the diffusion of the loaded SCDX again from a fresh "
        "initialisation with the current defaults (for changes to stage 2 only)",
    )  # fmt: skip
    parser.add_argument("--out", default=None, help="one folder for the JSON, page and figures")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        if args.dataset == "snareseq_mop":
            args.dataset = "neurips2021_bmmc_multiome_starter"
        args.n_channels, args.ae_epochs = 16, 2
        args.diffusion_steps, args.peer_epochs, args.generation_steps, args.n_comps = 20, 2, 4, 10
        args.generation_seeds = 2
        args.out = args.out or tempfile.mkdtemp(prefix="scdx-bench-")
    if args.generation_steps is None:  # recorded as a number in the settings
        args.generation_steps = SAMPLERS["dpm++2m"].default_steps
    return args


def peer_name(mods: list[str]) -> str:
    return "MultiVI" if "atac" in mods else "totalVI"


def train_scdx(train: md.MuData, args, labels_key: str | None) -> tuple[SCDX, dict]:
    data = train.copy()
    SCDX.setup_mudata(data, labels_key=labels_key)
    options = {"architecture": args.architecture, "n_channels": args.n_channels,
               "latent_scaling": args.latent_scaling,
               "protein_likelihood": args.protein_likelihood}  # fmt: skip
    options = {key: value for key, value in options.items() if value is not None}
    model = SCDX(data, configuration=args.configuration, **options)
    # model.train() in its two stages, each timed: the configuration's budget unless given
    stopping = {"on": True, "off": False}.get(args.ae_early_stopping, args.ae_early_stopping)
    _, ae_seconds, ae_peak = measured(
        lambda: model.train_autoencoder(
            max_epochs=args.ae_epochs, early_stopping=stopping, enable_progress_bar=False
        )
    )
    _, diffusion_seconds, diffusion_peak = measured(
        lambda: model.train_diffusion(
            max_steps=args.diffusion_steps, lr=args.lr, enable_progress_bar=False
        )
    )
    ran = model.epochs_trained  # what ran, early stopping included
    budget = model.training_budget
    return model, {
        "configuration": args.configuration,
        "options": {
            key: model.options[key] for key in ("architecture", "n_channels", "latent_scaling")
        },
        "max_epochs": args.ae_epochs or budget["max_epochs"],
        "max_steps_diffusion": args.diffusion_steps or budget["max_steps_diffusion"],
        "diffusion_lr": args.lr or budget["diffusion_lr"],
        "dispersion_lr": budget["dispersion_lr"],
        "seconds": ae_seconds + diffusion_seconds,
        "peak_mib": max(ae_peak, diffusion_peak),
        "autoencoder_seconds": ae_seconds,
        "diffusion_seconds": diffusion_seconds,
        "autoencoder_peak_mib": ae_peak,
        "diffusion_peak_mib": diffusion_peak,
        "autoencoder_epochs": ran["autoencoder"],
        "diffusion_epochs": ran["diffusion"],
        "diffusion_steps": ran["diffusion_steps"],
        "condition_timesteps": condition_timesteps(model),
        "epochs_trained": True,
    }


def peer_data(train: md.MuData, mods: list[str]) -> md.MuData:
    """A copy registered with the peer (totalVI needs a dense protein matrix)."""
    data = train.copy()
    if "atac" in mods:
        scvi.model.MULTIVI.setup_mudata(data, modalities={"rna_layer": "rna", "atac_layer": "atac"})
    else:
        data.mod["protein"].X = dense(data["protein"].X)
        scvi.model.TOTALVI.setup_mudata(
            data, modalities={"rna_layer": "rna", "protein_layer": "protein"}
        )
    return data


def train_peer(train: md.MuData, mods: list[str], epochs: int):
    data = peer_data(train, mods)
    model = (scvi.model.MULTIVI if "atac" in mods else scvi.model.TOTALVI)(data)
    model.train(max_epochs=epochs, enable_progress_bar=False)
    return model


def shown(path: Path) -> str:
    """A path as the page shows it: relative to the repository where it lies inside."""
    path = path.resolve()
    return str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent) else str(path)


def dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float32)


def predictors(scdx: SCDX, peer, train, test, source: str, target: str, args) -> dict:
    """``{name: deferred prediction}`` of ``target`` for the test cells, from ``source`` only."""

    def scdx_call(**kwargs):
        return lambda: scdx.get_translated_modality(
            test[source].copy(), source, target, seed=0, return_type="numpy", **kwargs
        )

    calls = {SCDX_NAME: scdx_call(), SAMPLE_NAME: scdx_call(**SAMPLE)}
    if target != "atac":
        calls[COUNTS_NAME] = scdx_call(expected="counts")
    if target in ("rna", "atac") and "atac" in test.mod:
        calls["MultiVI"] = lambda: multivi_translate(peer, test, source, target)
    elif target == "protein":  # totalVI: test cells as a batch without protein (its tutorial)
        calls["totalVI"] = lambda: totalvi_rna_to_protein(train, test, args.peer_epochs)
    return calls


def run_translation(scdx, peer, train, test, mods, labels_key, args, record) -> dict:
    """Score every predictor in both directions; return per-feature scores for the figures."""
    train_labels, test_labels = labels_of(train, labels_key), labels_of(test, labels_key)
    per_feature = {}
    for source, target in translation_directions(mods):
        direction = f"{source}->{target}"
        calls = predictors(scdx, peer, train, test, source, target, args)
        runs = measured_together(calls, TIMING_REPEATS, warmup=True)
        predictions = {name: result for name, (result, *_) in runs.items()}
        timings = {name: cost for name, (_, *cost) in runs.items()}
        controls, seconds, peak = measured(
            lambda s=source, t=target: translation_controls(
                train[s].X, train[t].X, test[s].X, s, t
            ),
            TIMING_REPEATS,
        )
        predictions.update(controls)
        timings.update(dict.fromkeys(controls, (seconds, peak)))
        floors, seconds, peak = measured(
            lambda s=source, t=target: latent_floor(
                scdx.get_latent_representation(train, modality=s), train[t].X,
                scdx.get_latent_representation(test, modality=s), t,
            ), TIMING_REPEATS,
        )  # fmt: skip
        predictions.update(floors)
        timings.update(dict.fromkeys(floors, (seconds, peak)))
        result = translation_score_set(
            test[target].X, predictions, target, train[target].X, train_labels, test_labels,
            n_comps=args.n_comps,
        )  # fmt: skip
        per_feature[direction] = result["per_feature"]
        for name, scores in result["scores"].items():
            seconds, peak = timings[name]
            record({"task": "translation", "direction": direction, "model": name,
                    "n_cells": test.n_obs, "seconds": seconds,
                    "cells_per_second": test.n_obs / seconds, "peak_mib": peak,
                    "includes_training": name == "totalVI" or name in {**controls, **floors},
                    "chance": result["chance"],
                    "label_accuracy_measured": result.get("label_accuracy_measured"),
                    **scores})  # fmt: skip
    return per_feature


# ----------------------------------------------------------------------------- generation


def peer_samples(peer, test: md.MuData, mods: list[str]) -> dict[str, np.ndarray]:
    """The peer's posterior samples of the test cells (counts from its likelihoods)."""
    if "atac" in mods:
        return multivi_posterior_samples(peer, test.copy())
    data = test.copy()
    data.mod["protein"].X = dense(data["protein"].X)
    return peer.posterior_predictive_sample(data)


def run_generation(scdx, peer, train, test, mods, labels_key, args, record) -> dict:
    """Score SCDX's generated cells, the peer's samples and the real-vs-real floor."""
    train_labels, test_labels = labels_of(train, labels_key), labels_of(test, labels_key)
    request, reference = generation_request(train, test, labels_key)
    peer_set = f"{peer_name(mods)} posterior samples"
    calls = {
        SCDX_NAME: lambda: scdx.generate(
            **request, sampler="dpm++2m", n_steps=args.generation_steps, seed=0
        ),
        peer_set: lambda: peer_samples(peer, test, mods),
    }
    runs = measured_together(calls, TIMING_REPEATS, warmup=True)
    generated, samples = runs[SCDX_NAME][0], runs[peer_set][0]
    timings = {name: cost for name, (_, *cost) in runs.items()}
    rows = reference_sample(train.n_obs, reference, train_labels, seed=0)
    ceiling = scdx.posterior_predictive_sample(test, seed=0)
    labels = {SCDX_NAME: labels_of(generated, labels_key), peer_set: test_labels,
              CEILING_NAME: test_labels}  # fmt: skip
    if train_labels is not None:
        labels[REFERENCE_NAME] = train_labels[rows]
    figures = {}
    for m in mods:
        sets = {SCDX_NAME: generated[m].X, CEILING_NAME: ceiling[m], peer_set: samples[m],
                REFERENCE_NAME: train[m].X[rows]}  # fmt: skip
        scores = generation_score_set(
            test[m].X, sets, m, test_labels, labels, n_comps=args.n_comps,
            seeds=GENERATION_SEEDS[: args.generation_seeds], paired=(CEILING_NAME, peer_set),
        )  # fmt: skip
        for name, row in scores.items():
            if name in timings:
                secs, peak_mib = timings[name]
                row.update(seconds=secs, cells_per_second=sets[name].shape[0] / secs,
                           peak_mib=peak_mib)  # fmt: skip
            record({"task": "generation", "modality": m, "model": name,
                    "n_cells": int(sets[name].shape[0]), **row})  # fmt: skip
        figures[m] = {
            name: joint_embedding(test[m].X, cells, m, n_comps=args.n_comps)
            for name, cells in sets.items()
        }
    umap_labels = {"real": test_labels, SCDX_NAME: labels[SCDX_NAME]}
    return {"embeddings": figures, "labels": umap_labels if labels_key else None}


def draw_figures(generation: dict, per_feature: dict, folder: Path) -> list[Path]:
    """The UMAP of each modality and the per-feature scatter of each direction (PNG)."""
    drawn = []
    for m, sets in generation["embeddings"].items():
        fig = umap_real_vs_generated(sets, generation["labels"], title=DISPLAY[m])
        drawn.append(folder / f"umap_{m}.png")
        fig.savefig(drawn[-1], dpi=100)
    for direction, scores in per_feature.items():
        source, target = direction.split("->")
        metric = "AUROC per peak" if target == "atac" else "Pearson per feature"
        hidden = (SAMPLE_NAME, COUNTS_NAME, "mean profile")
        shown_scores = {n: v for n, v in scores.items() if n not in hidden}
        fig = feature_scatter(
            shown_scores, SCDX_NAME, metric, title=f"{DISPLAY[source]} → {DISPLAY[target]}"
        )
        drawn.append(folder / f"per_feature_{source}_to_{target}.png")
        fig.savefig(drawn[-1], dpi=100)
    return drawn


# ----------------------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")
    scvi.settings.seed = args.seed
    mdata = read(args.dataset)
    train, test = split(mdata)
    mods = [m for m in ("rna", "atac", "protein") if m in mdata.mod]
    labels_key = args.labels_key if args.labels_key in mdata.obs else None
    out = Path(args.out) if args.out else None
    json_path = (out or RESULTS) / f"benchmark_{args.dataset}.json"
    page = (out or DOCS) / f"{args.dataset}.md"
    figures = page.parent / args.dataset
    figures.mkdir(parents=True, exist_ok=True)
    peer = peer_name(mods)
    results = Results(json_path, {
        "dataset": args.dataset, "n_train": int(train.n_obs), "n_test": int(test.n_obs),
        "n_features": {m: int(mdata[m].n_vars) for m in mods}, "labels_key": labels_key,
        "peer": peer, "results_file": shown(json_path), "settings": vars(args),
        "date": time.strftime("%Y-%m-%d"), "generation_protocol": GROUPED,
        "timing_repeats": TIMING_REPEATS, "timing_in_turns": True, "timing_warmup": True,
        "translation_sample_steps": SAMPLERS["dpm++2m"].default_steps,
        **provenance("run.py"),
    })  # fmt: skip
    record = results.record

    models = Path(args.save_dir or args.load_dir or ".")
    if args.load_dir:
        scdx = SCDX.load(models / f"{args.dataset}_scdx", adata=train.copy())
        peer_cls = scvi.model.MULTIVI if "atac" in mods else scvi.model.TOTALVI
        peer_model = peer_cls.load(models / f"{args.dataset}_peer", adata=peer_data(train, mods))
        # the training records of the run that saved these models, if its results are there
        previous = json.loads(json_path.read_text()) if json_path.exists() else {}
        saved = previous.get("training", [])
        for row in saved or [{"task": "training", "model": m} for m in (SCDX_NAME, peer)]:
            trained_at = row.get("trained_at", previous.get("commit"))
            row = {**row, "loaded": True, "trained_at": trained_at}
            if args.retrain_diffusion and row["model"] == SCDX_NAME:
                scdx, seconds, peak = retrain_diffusion(
                    scdx, max_steps=args.diffusion_steps, lr=args.lr
                )
                row = {
                    **row, "diffusion_retrained_at": provenance("run.py")["commit"],
                    "diffusion_seconds": seconds, "diffusion_peak_mib": peak,
                    "seconds": row.get("autoencoder_seconds", 0.0) + seconds,
                    "peak_mib": max(row.get("peak_mib", 0.0), peak),
                    "diffusion_epochs": scdx.epochs_trained["diffusion"],
                    "diffusion_steps": scdx.epochs_trained["diffusion_steps"],
                    "condition_timesteps": condition_timesteps(scdx),
                }  # fmt: skip
            record(row, "training")
    else:
        scdx, info = train_scdx(train, args, labels_key)
        record({"task": "training", "model": SCDX_NAME, **info}, "training")
        peer_model, seconds, peak = measured(lambda: train_peer(train, mods, args.peer_epochs))
        epochs = len(peer_model.history.get("elbo_train", [])) or args.peer_epochs
        record({"task": "training", "model": peer, "seconds": seconds, "peak_mib": peak,
                "epochs": epochs}, "training")  # fmt: skip
        if args.save_dir:
            scdx.save(models / f"{args.dataset}_scdx", overwrite=True)
            peer_model.save(models / f"{args.dataset}_peer", overwrite=True)

    per_feature = run_translation(scdx, peer_model, train, test, mods, labels_key, args, record)
    generation = run_generation(scdx, peer_model, train, test, mods, labels_key, args, record)
    drawn = draw_figures(generation, per_feature, figures)
    write_page(results.payload, drawn, page)
    print(f"wrote {results.path}, {page} and {len(drawn)} figures in {figures}")
    if out is None:  # the run of record: refresh the summary of docs/benchmarks.md
        update_summary()


if __name__ == "__main__":
    main()
