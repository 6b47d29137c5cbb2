"""The benchmark of record on one dataset: SCDX beside its scvi-tools peer and two controls.

In one process and on the canonical split (test cells: ``np.random.default_rng(0).random(n_obs)
< 0.2``), SCDX (the package defaults with ``latent_scaling="per_dim"``), the peer (MultiVI for
RNA+ATAC, totalVI for RNA+protein), a mean-profile control and kNN regression (k = 15) are fitted
on the same training cells and scored on the held-out cells:

* translation both ways, from an AnnData holding only the source modality (the user's call):
  Pearson and Spearman per feature, per cell and overall and RMSE on log1p CP10k (RNA, protein);
  per-peak and flattened AUROC/AUPRC with the prevalence (ATAC); for every target FOSCTTM and
  the accuracy of a kNN classifier trained on real training cells at recovering the translated
  cells' types, both in a PCA fitted on the training cells' target modality;
* generation of as many cells per type as the test set has (SCDX) against the peer's posterior
  samples of the test cells and against real training cells of the same composition (what a
  perfect generator would score), in a PCA fitted on the real test cells (ATAC binarised):
  multi-scale RBF MMD, energy distance, random-forest real-vs-generated AUC (3 seeds), kNN
  mixing, kNN label recovery and the median per-cell-type MMD;
* cost: training wall-clock, translation and generation throughput and peak memory, each also
  as the ratio SCDX / peer.

Writes ``benchmarks/results/benchmark_<dataset>.json`` and the page ``docs/benchmarks/<dataset>.md``
with its PNG figures in ``docs/benchmarks/<dataset>/``, stamped with the commit, the hardware and
the command, and refreshes the summary across data sets on ``docs/benchmarks.md``
(``summary.py``). ``--out DIR`` puts the JSON, page and figures in DIR and leaves the docs alone.

Usage::

    python benchmarks/run.py --dataset snareseq_mop
    python benchmarks/run.py --dataset neurips2021_bmmc_cite_starter --architecture small
    python benchmarks/run.py --quick --out /tmp/bench     # a smoke run on a starter set
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import mudata as md
import numpy as np
import scvi
from _common import RESULTS, Results, measured, provenance, read, split
from _report import plot_feature_scatter, plot_umaps, write_page
from generation import multivi_posterior_samples
from scipy import sparse
from summary import update as update_summary
from translation import multivi_translate, totalvi_rna_to_protein

from scdx_scvi import SCDX
from scdx_scvi.metrics import (
    auprc_per_feature,
    auroc_auprc_flat,
    auroc_per_feature,
    classifier_auc,
    energy_distance,
    foscttm,
    knn_label_transfer_accuracy,
    knn_prediction,
    log_cp10k,
    mean_profile_prediction,
    mixing_score,
    mmd_rbf,
    pca_projection,
    pearson_overall,
    pearson_per_cell,
    pearson_per_feature,
    per_group,
    rmse,
    spearman_per_cell,
    spearman_per_feature,
)

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks"
SCDX_NAME, SAMPLE_NAME = "SCDX", "SCDX, one sample"
#: One sample per cell instead of the default conditional-mean estimate.
SAMPLE = {"sampler": "dpm++2m", "n_steps": 25}


# ----------------------------------------------------------------------------- set-up


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_mop")
    parser.add_argument("--labels-key", default="cell_type", help="'' for none")
    parser.add_argument("--architecture", default="default")
    parser.add_argument("--n-channels", type=int, default=64, help="U-Net base width C")
    parser.add_argument("--ae-epochs", type=int, default=25)
    parser.add_argument("--diffusion-steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=1e-3, help="diffusion learning rate")
    parser.add_argument("--latent-scaling", default="per_dim", choices=["scalar", "per_dim"])
    parser.add_argument("--peer-epochs", type=int, default=100)
    parser.add_argument("--generation-steps", type=int, default=25, help="dpm++2m steps")
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument("--save-dir", default=None, help="save the trained models here")
    parser.add_argument(
        "--load-dir", default=None, help="load the models of an earlier --save-dir (no timings)"
    )
    parser.add_argument("--out", default=None, help="one folder for the JSON, page and figures")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args()
    if args.quick:
        if args.dataset == "snareseq_mop":
            args.dataset = "neurips2021_bmmc_multiome_starter"
        args.architecture, args.n_channels, args.ae_epochs = "small", 16, 2
        args.diffusion_steps, args.peer_epochs, args.generation_steps, args.n_comps = 20, 2, 4, 10
        args.out = args.out or tempfile.mkdtemp(prefix="scdx-bench-")
    return args


def peer_name(mods: list[str]) -> str:
    return "MultiVI" if "atac" in mods else "totalVI"


def train_scdx(train: md.MuData, args, labels_key: str | None) -> tuple[SCDX, dict]:
    data = train.copy()
    SCDX.setup_mudata(data, labels_key=labels_key)
    model = SCDX(
        data, architecture=args.architecture, n_channels=args.n_channels,
        latent_scaling=args.latent_scaling,
    )  # fmt: skip
    _, ae_seconds, ae_peak = measured(
        lambda: model.train_autoencoder(max_epochs=args.ae_epochs, enable_progress_bar=False)
    )
    _, diffusion_seconds, diffusion_peak = measured(
        lambda: model.train_diffusion(
            max_steps=args.diffusion_steps, lr=args.lr, enable_progress_bar=False
        )
    )
    return model, {
        "seconds": ae_seconds + diffusion_seconds,
        "peak_mib": max(ae_peak, diffusion_peak),
        "autoencoder_seconds": ae_seconds,
        "diffusion_seconds": diffusion_seconds,
        "autoencoder_epochs": int(model.history["train_loss_epoch"].shape[0])
        if "train_loss_epoch" in model.history
        else args.ae_epochs,
        "diffusion_steps": args.diffusion_steps,
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


def labels_of(data: md.MuData, labels_key: str | None) -> np.ndarray | None:
    return data.obs[labels_key].astype(str).to_numpy() if labels_key else None


def dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float32)


def binarised(x) -> sparse.csr_matrix:
    x = sparse.csr_matrix(x, dtype=np.float32)
    x.data = (x.data > 0).astype(np.float32)
    x.eliminate_zeros()
    return x


# ----------------------------------------------------------------------------- translation


def translation_scores(target: str, observed, predicted: np.ndarray) -> tuple[dict, np.ndarray]:
    """Paired metrics of one prediction, and its per-feature score (for the scatter figure)."""
    if target == "atac":
        per_feature = auroc_per_feature(observed, predicted)
        flat = auroc_auprc_flat(observed, predicted)
        return {
            "auroc_per_peak": float(np.nanmean(per_feature)),
            "auprc_per_peak": float(np.nanmean(auprc_per_feature(observed, predicted))),
            "auroc_flat": flat["auroc"],
            "auprc_flat": flat["auprc"],
            "prevalence": flat["prevalence"],
            "peaks_scored": int(np.isfinite(per_feature).sum()),
        }, per_feature
    truth, pred = log_cp10k(observed), np.log1p(predicted)
    per_feature = pearson_per_feature(truth, pred)
    return {
        "pearson_per_feature": float(per_feature.mean()),
        "pearson_per_cell": float(pearson_per_cell(truth, pred).mean()),
        "pearson_overall": pearson_overall(truth, pred),
        "spearman_per_feature": float(spearman_per_feature(truth, pred).mean()),
        "spearman_per_cell": float(spearman_per_cell(truth, pred).mean()),
        "rmse": rmse(truth, pred),
    }, per_feature


class TargetSpace:
    """A PCA of the training cells' target modality, for FOSCTTM and label transfer."""

    def __init__(self, train_target, target: str, labels, n_comps: int):
        self.target, self.labels, self.n_comps = target, labels, n_comps
        self.train = binarised(train_target) if target == "atac" else train_target

    def scores(self, observed, predicted: np.ndarray, test_labels) -> dict:
        observed = binarised(observed) if self.target == "atac" else observed
        both = sparse.vstack([sparse.csr_matrix(observed), sparse.csr_matrix(predicted)])
        train_pcs, pcs = pca_projection(self.train, both, n_comps=self.n_comps)
        real, translated = np.split(pcs, [observed.shape[0]])
        # a constant prediction ties every distance, which FOSCTTM does not count as closer
        constant = np.ptp(translated, axis=0).max() == 0
        out = {"foscttm": None if constant else foscttm(translated, real)}
        if self.labels is not None:
            transfer = knn_label_transfer_accuracy(train_pcs, self.labels, translated, test_labels)
            measured_cells = knn_label_transfer_accuracy(train_pcs, self.labels, real, test_labels)
            out["label_accuracy"] = transfer["accuracy"]
            out["label_accuracy_measured"] = measured_cells["accuracy"]
        return out


def predictors(scdx: SCDX, peer, train, test, source: str, target: str, args) -> dict:
    """``{name: deferred prediction}`` of ``target`` for the test cells, from ``source`` only."""

    def scdx_call(**kwargs):
        return lambda: scdx.get_translated_modality(
            test[source].copy(), source, target, seed=0, return_type="numpy", **kwargs
        )

    calls = {SCDX_NAME: scdx_call(), SAMPLE_NAME: scdx_call(**SAMPLE)}
    if target in ("rna", "atac") and "atac" in test.mod:
        calls["MultiVI"] = lambda: multivi_translate(peer, test, source, target)
    elif target == "protein":  # totalVI: test cells as a batch without protein (its tutorial)
        calls["totalVI"] = lambda: totalvi_rna_to_protein(train, test, args.peer_epochs)
    calls["kNN regression"] = lambda: knn_prediction(
        train[source].X, train[target].X, test[source].X, source, target
    )
    calls["mean profile"] = lambda: mean_profile_prediction(train[target].X, test.n_obs, target)
    return calls


def run_translation(scdx, peer, train, test, mods, labels_key, args, record) -> dict:
    """Score every predictor in both directions; return per-feature scores for the figures."""
    other = "atac" if "atac" in mods else "protein"
    train_labels, test_labels = labels_of(train, labels_key), labels_of(test, labels_key)
    per_feature = {}
    for source, target in ((other, "rna"), ("rna", other)):
        space = TargetSpace(train[target].X, target, train_labels, args.n_comps)
        direction = f"{source}->{target}"
        per_feature[direction] = {}
        for name, call in predictors(scdx, peer, train, test, source, target, args).items():
            predicted, seconds, peak = measured(call)
            scores, per_feature[direction][name] = translation_scores(
                target, test[target].X, predicted
            )
            scores.update(space.scores(test[target].X, predicted, test_labels))
            record({"task": "translation", "direction": direction, "model": name,
                    "n_cells": test.n_obs, "seconds": seconds,
                    "cells_per_second": test.n_obs / seconds, "peak_mib": peak,
                    "includes_training": name == "totalVI", **scores})  # fmt: skip
    return per_feature


# ----------------------------------------------------------------------------- generation


def peer_samples(peer, test: md.MuData, mods: list[str]) -> dict[str, np.ndarray]:
    """The peer's posterior samples of the test cells (counts from its likelihoods)."""
    if "atac" in mods:
        return multivi_posterior_samples(peer, test.copy())
    data = test.copy()
    data.mod["protein"].X = dense(data["protein"].X)
    return peer.posterior_predictive_sample(data)


def composition_sample(train: md.MuData, labels, composition: dict[str, int]) -> md.MuData:
    """Real training cells drawn with the test set's composition (the perfect generator)."""
    rng = np.random.default_rng(0)
    if labels is None:
        n = sum(composition.values())
        return train[np.sort(rng.choice(train.n_obs, n, replace=n > train.n_obs))].copy()
    picked = []
    for label, n in composition.items():
        pool = np.flatnonzero(labels == label)
        picked.append(rng.choice(pool, n, replace=n > pool.size))
    return train[np.sort(np.concatenate(picked))].copy()


def run_generation(scdx, peer, train, test, mods, labels_key, args, record) -> dict:
    """Score SCDX's generated cells, the peer's samples and real cells; return PCs for UMAPs."""
    train_labels, test_labels = labels_of(train, labels_key), labels_of(test, labels_key)
    if labels_key:  # types without training cells cannot be asked for
        known = test_labels[np.isin(test_labels, train_labels)]
        names, counts = np.unique(known, return_counts=True)
        composition = {str(k): int(n) for k, n in zip(names, counts, strict=True)}
        request = {"labels": composition}
    else:
        composition, request = {"all": test.n_obs}, {"n_cells": test.n_obs}
    generated, seconds, peak = measured(
        lambda: scdx.generate(**request, sampler="dpm++2m", n_steps=args.generation_steps, seed=0)
    )
    samples, peer_seconds, peer_peak = measured(lambda: peer_samples(peer, test, mods))
    real = composition_sample(train, train_labels, composition)
    sets = {
        SCDX_NAME: ({m: generated[m].X for m in mods}, seconds, peak,
                    labels_of(generated, labels_key)),
        f"{peer_name(mods)} posterior samples": (samples, peer_seconds, peer_peak, test_labels),
        "real training cells": ({m: real[m].X for m in mods}, None, None,
                                labels_of(real, labels_key)),
    }  # fmt: skip
    embeddings = {}
    for m in mods:
        prepare = binarised if m == "atac" else sparse.csr_matrix
        stacked = sparse.vstack([prepare(cells[m]) for cells, *_ in sets.values()])
        real_pcs, pcs = pca_projection(prepare(test[m].X), stacked, n_comps=args.n_comps)
        parts = np.split(pcs, np.cumsum([cells[m].shape[0] for cells, *_ in sets.values()])[:-1])
        embeddings[m] = {"real (held out)": real_pcs}
        for (name, (_, secs, peak_mib, labels)), pcs_m in zip(sets.items(), parts, strict=True):
            embeddings[m][name] = pcs_m
            auc = classifier_auc(real_pcs, pcs_m, seeds=(0, 1, 2))
            row = {"task": "generation", "modality": m, "model": name,
                   "n_cells": int(pcs_m.shape[0]), "mmd_rbf": mmd_rbf(real_pcs, pcs_m),
                   "energy_distance": energy_distance(real_pcs, pcs_m),
                   "classifier_auc": auc["auc"], "classifier_auc_std": auc["auc_std"],
                   "mixing": mixing_score(real_pcs, pcs_m)}  # fmt: skip
            if labels is not None:
                row["label_accuracy"] = knn_label_transfer_accuracy(
                    real_pcs, test_labels, pcs_m, labels
                )["accuracy"]
                by_type = per_group(mmd_rbf, real_pcs, pcs_m, test_labels, labels)
                row["mmd_rbf_per_type_median"] = float(by_type["mmd_rbf"].median())
                row["types_scored"] = int(by_type["scored"].sum())
            if secs is not None:
                row.update(seconds=secs, cells_per_second=pcs_m.shape[0] / secs, peak_mib=peak_mib)
            record(row)
    labels = {"real (held out)": test_labels, SCDX_NAME: sets[SCDX_NAME][3]}
    return {"embeddings": embeddings, "labels": labels if labels_key else None}


# ----------------------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")
    scvi.settings.seed = 0
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
        "date": time.strftime("%Y-%m-%d"),
        **provenance("run.py"),
    })  # fmt: skip
    record = results.record

    models = Path(args.save_dir or args.load_dir or ".")
    if args.load_dir:
        scdx = SCDX.load(models / f"{args.dataset}_scdx", adata=train.copy())
        peer_cls = scvi.model.MULTIVI if "atac" in mods else scvi.model.TOTALVI
        peer_model = peer_cls.load(models / f"{args.dataset}_peer", adata=peer_data(train, mods))
        record({"task": "training", "model": SCDX_NAME, "loaded": True}, "training")
        record({"task": "training", "model": peer, "loaded": True}, "training")
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
    drawn = plot_umaps(generation["embeddings"], generation["labels"], figures)
    drawn += [plot_feature_scatter(scores, pair, figures) for pair, scores in per_feature.items()]
    write_page(results.payload, drawn, page)
    print(f"wrote {results.path}, {page} and {len(drawn)} figures in {figures}")
    if out is None:  # the run of record: refresh the summary of docs/benchmarks.md
        update_summary()


if __name__ == "__main__":
    main()
