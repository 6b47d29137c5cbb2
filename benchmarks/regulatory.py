"""Gene–peak regulatory links and in-silico perturbation: validation against planted truth.

Simulator mode (default): paired cells from ``simulate_multiome`` (default sizes: 2,000 cells,
1,000 genes, 5,000 peaks) whose planted gene–peak links (effect of an open peak on its gene's
log expression) are the ground truth. An SCDX model (``architecture="small"``, otherwise the
package defaults) is trained on all cells, and every link method of
``get_regulatory_links`` scores the same candidate set (peak centre within 150 kb of the TSS):

* AUROC and AUPRC of each method (``gradient``, ``attention``, ``correlation``, ``distance``)
  and of random scores, against the planted links;
* perturbation: for each linked peak and as many unlinked candidate peaks, the peak is set
  open and closed in every cell (``get_perturbation_effect``, matched seeds) and the predicted
  log2 fold change of each candidate gene is compared with the planted effect (0 for unlinked
  pairs): Spearman, with random and constant predictions beside it, and the sign accuracy on
  the linked pairs (all planted effects are positive, so "always up" scores 1).

SNARE-seq mode (``--dataset snareseq_mop``, mm10 TSS table): no ground truth exists, so only
internal checks are reported: distance decay of the top links against the candidate
background, reproducibility between two training seeds and between two halves of the cells
(Spearman of the scores, overlap of the top 1,000), cell-type specificity (per-type scores of
the five largest types: mean pairwise Spearman), and overlap with the correlation baseline.

Usage::

    python benchmarks/regulatory.py                          # simulator, ~10 min on one core
    python benchmarks/regulatory.py --quick                  # smoke run
    python benchmarks/regulatory.py --dataset snareseq_mop   # trains two models (see docs)
    python benchmarks/regulatory.py --dataset snareseq_mop --baselines-only  # no training
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import mudata as md
import numpy as np
import pandas as pd
import scvi
import torch
from _common import DATA, RESULTS, provenance, read
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from scdx_scvi import SCDX
from scdx_scvi.datasets import simulate_multiome

METHODS = ("gradient", "attention", "correlation", "distance")
TSS_MM10 = DATA / "annotations" / "mm10_gencode_vM25_tss500bp.bed"
KEY = ["gene", "peak"]


def quiet() -> None:
    md.set_options(pull_on_update=False)
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "scvi"):
        logging.getLogger(name).setLevel(logging.WARNING)


#: Model variants: the package defaults and the reference configuration (no learned
#: translation, so no gradient links).
VARIANTS = {"default": {}, "reference": {"configuration": "reference"}}
TRAINER = {"enable_progress_bar": False, "accelerator": "cpu"}


def train(mdata: md.MuData, args, seed: int, variant: str = "default") -> SCDX:
    scvi.settings.seed = seed
    SCDX.setup_mudata(mdata, labels_key="cell_type")
    options = {"architecture": "small", "n_channels": args.channels, **VARIANTS[variant]}
    model = SCDX(mdata, **options)
    model.train(max_epochs=args.epochs, max_steps_diffusion=args.steps, **TRAINER)
    return model


def timed_links(model: SCDX, method: str, **kwargs) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    links = model.get_regulatory_links(method=method, **kwargs)
    return links, time.perf_counter() - start


# ----------------------------------------------------------------------------- simulator


def link_table(models: dict[str, SCDX], truth: pd.DataFrame, args) -> tuple[list[dict], dict]:
    """AUROC/AUPRC of every method and of random scores on the same candidates."""
    planted = set(zip(truth["gene"], truth["peak"], strict=True))
    rows, tables = [], {}
    for name, model in models.items():
        for method in METHODS:
            if method in ("correlation", "distance") and name != "default":
                continue  # baselines do not depend on the model
            if method == "gradient" and model.module.diffusion.condition_prob == 0:
                continue  # no learned translation to differentiate
            links, seconds = timed_links(model, method, n_cells=args.n_cells)
            tables[(name, method)] = links
            rows.append(_ranking_row(name, method, links, planted, seconds))
    rng = np.random.default_rng(0)
    candidates = tables[("default", "distance")]
    random = candidates.assign(score=rng.random(len(candidates)))
    rows.append(_ranking_row("-", "random", random, planted, 0.0))
    return rows, tables


def _ranking_row(model: str, method: str, links, planted: set, seconds: float) -> dict:
    y = np.array([pair in planted for pair in zip(links["gene"], links["peak"], strict=True)])
    return {
        "model": model,
        "method": method,
        "candidates": len(links),
        "positives": int(y.sum()),
        "planted_in_candidates": int(y.sum()) / len(planted),
        "auroc": float(roc_auc_score(y, links["score"])),
        "auprc": float(average_precision_score(y, links["score"])),
        "prevalence": float(y.mean()),
        "seconds": round(seconds, 1),
    }


def perturbation_table(
    models: dict[str, SCDX], truth: pd.DataFrame, tables: dict, args
) -> list[dict]:
    """Predicted effect of opening vs closing a peak on its candidate genes, vs planted."""
    candidates = tables[("default", "distance")][KEY]
    rng = np.random.default_rng(1)
    linked = truth["peak"].unique()
    others = np.setdiff1d(candidates["peak"].unique(), linked)
    n = min(args.n_perturbed, len(linked))
    peaks = np.concatenate(
        [rng.choice(linked, n, replace=False), rng.choice(others, min(n, len(others)), False)]
    )
    n_obs = truth.attrs["n_cells"]
    cells = np.sort(rng.choice(n_obs, min(args.n_cells, n_obs), False))
    pairs = candidates[candidates["peak"].isin(peaks)].reset_index(drop=True)
    index = pd.MultiIndex.from_frame(pairs[KEY])
    pairs["planted"] = truth.set_index(KEY)["effect"].reindex(index).fillna(0.0).to_numpy()
    predictions = {}
    for name, model in models.items():
        if model.module.diffusion.condition_prob == 0:
            continue  # perturbation goes through the learned translation
        start = time.perf_counter()
        predictions[name] = (_open_vs_closed(model, pairs, cells), time.perf_counter() - start)
    is_linked = pairs["planted"] > 0
    out = []

    def row(name, predicted, note=""):
        rho_all = spearmanr(predicted, pairs["planted"]).statistic
        rho_linked = spearmanr(predicted[is_linked], pairs.loc[is_linked, "planted"]).statistic
        sign = float(np.mean(np.asarray(predicted)[is_linked] > 0))
        out.append(
            {
                "prediction": name,
                "pairs": len(pairs),
                "linked_pairs": int(is_linked.sum()),
                "spearman_all_pairs": _finite(rho_all),
                "spearman_linked_pairs": _finite(rho_linked),
                "sign_accuracy_linked": sign,
                "note": note,
            }
        )

    for name, (predicted, seconds) in predictions.items():
        row(f"SCDX {name}: perturbation, open vs closed", predicted, f"{seconds:.0f} s")
    for (name, method), links in tables.items():
        if method in ("gradient", "correlation"):
            scores = links.set_index(KEY)["raw_score"].reindex(index).to_numpy()
            row(f"{method} link raw score ({name})", scores)
    rho = [
        spearmanr(np.random.default_rng(s).random(len(pairs)), pairs["planted"]).statistic
        for s in range(20)
    ]
    out.append(
        {
            "prediction": "random (mean of 20 draws)",
            "pairs": len(pairs),
            "linked_pairs": int(is_linked.sum()),
            "spearman_all_pairs": float(np.mean(rho)),
            "spearman_linked_pairs": float("nan"),
            "sign_accuracy_linked": 0.5,
            "note": "",
        }
    )
    row("constant (every effect +1)", np.ones(len(pairs)), "Spearman undefined: no ranking")
    return out


def _open_vs_closed(model: SCDX, pairs: pd.DataFrame, cells: np.ndarray) -> np.ndarray:
    """log2 of the predicted expression with the peak open over closed, per pair."""
    out = np.zeros(len(pairs))
    for peak, rows in pairs.groupby("peak").groups.items():
        arms = {
            name: model.get_perturbation_effect(
                [peak], "atac", "rna", perturbation="set", value=level, indices=cells, seed=0
            ).set_index("feature")["perturbed"]
            for name, level in (("open", 1), ("closed", 0))
        }
        genes = pairs.loc[rows, "gene"]
        out[rows] = np.log2(arms["open"].loc[genes] / arms["closed"].loc[genes]).to_numpy()
    return out


def _finite(value) -> float:
    return float(value) if np.isfinite(value) else float("nan")


def run_simulator(args) -> dict:
    sizes = {"n_cells": 400, "n_genes": 150, "n_peaks": 800} if args.quick else {}
    mdata, truth = simulate_multiome(seed=args.seed, **sizes)
    truth.attrs["n_cells"] = mdata.n_obs
    start = time.perf_counter()
    models, train_seconds = {}, {}
    for name in args.variants.split(","):
        models[name] = train(mdata.copy(), args, args.seed, name)
        train_seconds[name] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
    result = {
        "data": {
            "n_cells": mdata.n_obs,
            "n_genes": mdata["rna"].n_vars,
            "n_peaks": mdata["atac"].n_vars,
            "n_links": len(truth),
        },
        "train_seconds": train_seconds,
    }
    result["links"], tables = link_table(models, truth, args)
    save(result, args)  # the link table is kept if the perturbation part is interrupted
    result["perturbation"] = perturbation_table(models, truth, tables, args)
    return result


# ----------------------------------------------------------------------------- SNARE-seq


def _top(links: pd.DataFrame, k: int) -> set:
    top = links.nlargest(k, "score")
    return set(zip(top["gene"], top["peak"], strict=True))


def _agreement(a: pd.DataFrame, b: pd.DataFrame, k: int) -> dict:
    merged = a.merge(b, on=KEY, suffixes=("_a", "_b"))
    return {
        "spearman": float(spearmanr(merged["score_a"], merged["score_b"]).statistic),
        f"top{k}_overlap": len(_top(a, k) & _top(b, k)) / k,
    }


def run_snareseq(args) -> dict:
    mdata = read("snareseq_mop")
    kwargs = {"tss": TSS_MM10, "n_cells": args.n_cells}
    k = args.top
    models = []
    if args.baselines_only:  # the baselines need a registered model, not a trained one
        SCDX.setup_mudata(mdata, labels_key="cell_type")
        models.append((SCDX(mdata, architecture="small"), 0.0))
        methods = ("correlation", "distance")
    else:
        for seed in (0, 1):
            start = time.perf_counter()
            models.append((train(mdata.copy(), args, seed), time.perf_counter() - start))
        methods = ("gradient", "correlation", "distance")
    model = models[0][0]
    out = {"train_seconds": [round(s, 1) for _, s in models], "methods": {}}
    for method in methods:
        links, seconds = timed_links(model, method, **kwargs)
        distance = links["distance"].to_numpy()
        top = links.nlargest(k, "score")
        entry = {
            "seconds": round(seconds, 1),
            "candidates": len(links),
            "median_distance_top_kb": float(np.median(top["distance"]) / 1e3),
            "median_distance_all_kb": float(np.median(distance) / 1e3),
            "share_top_within_10kb": float(np.mean(top["distance"] <= 10_000)),
            "share_all_within_10kb": float(np.mean(distance <= 10_000)),
        }
        if method != "distance":
            if len(models) > 1:
                entry["seeds"] = _agreement(
                    links, timed_links(models[1][0], method, **kwargs)[0], k
                )
            half = np.random.default_rng(0).random(mdata.n_obs) < 0.5
            halves = [
                timed_links(model, method, indices=np.flatnonzero(h), **kwargs)[0]
                for h in (half, ~half)
            ]
            entry["halves"] = _agreement(*halves, k)
            entry["specificity"] = _specificity(model, method, mdata, kwargs)
        out["methods"][method] = (entry, links)
    reference = out["methods"]["correlation"][1]
    for method, (entry, links) in out["methods"].items():
        if method != "correlation":
            entry["vs_correlation"] = _agreement(links, reference, k)
    out["methods"] = {m: entry for m, (entry, _) in out["methods"].items()}
    return out


def _specificity(model: SCDX, method: str, mdata: md.MuData, kwargs: dict) -> dict:
    """Mean pairwise Spearman of per-type scores over the five largest cell types."""
    types = mdata.obs["cell_type"].value_counts().drop("Mis", errors="ignore").index[:5]
    cells = np.flatnonzero(mdata.obs["cell_type"].isin(types))
    links = model.get_regulatory_links(method=method, groupby="cell_type", indices=cells, **kwargs)
    wide = links.pivot_table(index=KEY, columns="cell_type", values="score", observed=True)
    rho = wide.corr(method="spearman").to_numpy()
    return {
        "types": [str(t) for t in types],
        "mean_pairwise_spearman": float(rho[np.triu_indices_from(rho, 1)].mean()),
    }


# ----------------------------------------------------------------------------- report


def report(result: dict, dataset: str) -> None:
    if dataset == "simulate":
        print(pd.DataFrame(result["links"]).to_string(index=False, float_format="%.3f"))
        print()
        print(pd.DataFrame(result["perturbation"]).to_string(index=False, float_format="%.3f"))
    else:
        print(json.dumps(result["methods"], indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="simulate", choices=["simulate", "snareseq_mop"])
    parser.add_argument("--epochs", type=int, default=100, help="autoencoder epochs (max)")
    parser.add_argument("--steps", type=int, default=3000, help="diffusion steps (max)")
    parser.add_argument("--channels", type=int, default=32, help="U-Net width C")
    parser.add_argument("--n-cells", type=int, default=500, help="cells of the model methods")
    parser.add_argument("--n-perturbed", type=int, default=100, help="linked peaks perturbed")
    parser.add_argument("--top", type=int, default=1000, help="top links (snareseq checks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants", default="default", help=f"model variants, of {list(VARIANTS)}"
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument(
        "--baselines-only", action="store_true", help="snareseq: correlation and distance only"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.steps, args.n_cells, args.n_perturbed = 5, 50, 100, 5
    quiet()
    torch.set_num_threads(1)
    run = run_simulator if args.dataset == "simulate" else run_snareseq
    result = run(args)
    report(result, args.dataset)
    print(f"wrote {save(result, args)}")


def save(result: dict, args) -> str:
    """Write the result file (``--out`` or ``results/regulatory_<dataset>[...].json``)."""
    suffix = ("_baselines" if args.baselines_only else "") + ("_quick" if args.quick else "")
    name = f"regulatory_{args.dataset}{suffix}.json"
    path = RESULTS / name if args.out is None else args.out
    payload = {"dataset": args.dataset, "settings": vars(args), **provenance("regulatory.py")}
    with open(path, "w") as handle:
        json.dump({**payload, **result}, handle, indent=2, default=str)
    return str(path)


if __name__ == "__main__":
    main()
