"""Held-out reconstruction of the SCDX autoencoder (stage 1) against MultiVI / totalVI.

Every model is trained on the same training cells in the same process; the test cells are the
canonical split ``np.random.default_rng(0).random(n_obs) < 0.2``. Reported per modality:

* RNA: mean per-gene Pearson between predicted and observed log1p(counts per 10k);
* ATAC: mean per-peak AUROC of predicted accessibility against binarised observations
  (peaks with both classes among the test cells), with the test prevalence;
* protein: mean per-protein Pearson on log1p(counts per 10k) of the ADT counts.

Usage::

    python benchmarks/autoencoder_reconstruction.py --dataset snareseq_mop --max-epochs 25
    python benchmarks/autoencoder_reconstruction.py --dataset neurips2021_bmmc_cite_starter \
        --configs faithful,log1p,per_feature,log1p+per_feature,peer --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import mudata as md
import numpy as np
import scvi
import torch
from _common import RESULTS, provenance, read, split

from scdx_scvi import SCDX
from scdx_scvi.metrics import reconstruction_scores

CONFIGS = {
    "faithful": {},
    "log1p": {"encoder_input": "log1p"},
    "per_feature": {"reconstruction_weights": "per_feature"},
    "log1p+per_feature": {"encoder_input": "log1p", "reconstruction_weights": "per_feature"},
    "batch": {"use_batch": True},
}


def observed(test: md.MuData) -> dict:
    return {m: test[m].X for m in test.mod}


def run_scdx(train, test, modalities, config, args) -> dict:
    # Only the "batch" configuration registers the batch: the reference has no batch covariate.
    batch_key = "batch" if config == "batch" else None
    SCDX.setup_mudata(train, modalities=modalities, batch_key=batch_key)
    model = SCDX(train, architecture=args.architecture, **CONFIGS[config])
    start = time.perf_counter()
    model.train_autoencoder(max_epochs=args.max_epochs, enable_progress_bar=False)
    seconds = time.perf_counter() - start
    preds = model.get_normalized_modalities(test, library_size=1e4)
    epochs = len(model.history["train_loss"])
    return {
        "train_seconds": seconds,
        "epochs": epochs,
        **reconstruction_scores(observed(test), preds),
    }


def run_peer(train, test, modalities, args) -> dict:
    start = time.perf_counter()
    if "atac" in test.mod:
        scvi.model.MULTIVI.setup_mudata(train, modalities=modalities)
        model = scvi.model.MULTIVI(train)
        model.train_autoencoder(max_epochs=args.peer_max_epochs, enable_progress_bar=False)
        seconds = time.perf_counter() - start
        test.obs["_indices"] = np.arange(test.n_obs)
        preds = {
            "rna": 1e4 * model.get_normalized_expression(test, return_numpy=True),
            "atac": model.get_normalized_accessibility(test, return_numpy=True),
        }
        name = "MULTIVI"
    else:
        scvi.model.TOTALVI.setup_mudata(train, modalities=modalities)
        model = scvi.model.TOTALVI(train)
        model.train_autoencoder(max_epochs=args.peer_max_epochs, enable_progress_bar=False)
        seconds = time.perf_counter() - start
        rna, protein = model.get_normalized_expression(test, return_numpy=True)
        # totalVI's protein output is background-removed foreground: score it on the same scale.
        preds = {"rna": 1e4 * rna, "protein": 1e4 * protein / protein.sum(1, keepdims=True)}
        name = "TOTALVI"
    epochs = len(model.history["train_loss"])
    scores = reconstruction_scores(observed(test), preds)
    return {"model": name, "train_seconds": seconds, "epochs": epochs, **scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_mop")
    parser.add_argument("--configs", default="faithful,log1p+per_feature,peer")
    parser.add_argument("--architecture", default="default")
    parser.add_argument("--max-epochs", type=int, default=25)
    parser.add_argument(
        "--peer-max-epochs", type=int, default=None, help="epochs of the peer (default: same)"
    )
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.peer_max_epochs = args.peer_max_epochs or args.max_epochs
    warnings.filterwarnings("ignore")
    torch.set_num_threads(max(1, torch.get_num_threads()))

    mdata = read(args.dataset)
    second = "atac" if "atac" in mdata.mod else "protein"
    modalities = {"rna_layer": "rna", f"{second}_layer": second}
    n_test = int(split(mdata)[1].n_obs)
    payload = {
        "dataset": args.dataset,
        "n_train": int(mdata.n_obs - n_test),
        "n_test": n_test,
        "architecture": args.architecture,
        "max_epochs": args.max_epochs,
        "peer_max_epochs": args.peer_max_epochs,
        **provenance("autoencoder_reconstruction.py"),
        "results": [],
    }
    out = Path(args.out) if args.out else RESULTS / f"ae_reconstruction_{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for config in args.configs.split(","):
            scvi.settings.seed = seed
            train, test = split(mdata)
            if config == "peer":
                row = run_peer(train, test, modalities, args)
            else:
                row = {"model": "SCDX", **run_scdx(train, test, modalities, config, args)}
            row.update(config=config, seed=seed)
            payload["results"].append(row)
            print(json.dumps(row), flush=True)
            out.write_text(json.dumps(payload, indent=2))  # after every run: partial results
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
