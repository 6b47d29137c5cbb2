"""Cross-modality translation of held-out cells: SCDX's methods against the peers and controls.

The test cells are the canonical split ``np.random.default_rng(0).random(n_obs) < 0.2``; every
model sees only the training cells. For each direction (ATAC->RNA and RNA->ATAC on RNA+ATAC
data; RNA->protein and protein->RNA on CITE-seq), the test cells' source modality is translated
and scored against their measured target: per-gene (per-protein) and per-cell Pearson on
log1p(counts per 10k) for RNA and protein, per-peak AUROC and AUPRC for ATAC.

Models:

* ``SCDX-learned``: the default (conditional diffusion, ``condition_prob=0.5``, the denoiser's
  conditional-mean estimate ``sampler="mean"``, one evaluation), on the autoencoder of the
  base model; ``SCDX-learned-sample``: one sample per cell (DPM-Solver++, default steps);
  ``SCDX-learned-mean5``: the mean of 5 samples per cell (``n_samples=5``; the reference
  averages 5 runs too);
* ``SCDX-replacement`` / ``SCDX-guidance``: the reference's zero-shot methods (ancestral DDPM,
  1000 steps) on the same network (which also learned the joint), run on a subset of
  ``--n-zero-shot`` test cells (with ``SCDX-learned`` on the same cells, for the speed-up);
* ``SCDX-learned-mosaic``: a model trained from scratch with the target-side modality hidden
  (all-zero rows) for half of the training cells;
* peers: MultiVI (missing modality as zeros, its own mechanism) or totalVI (test cells as a
  batch without protein, the setting of its imputation tutorial; protein->RNA is not supported);
* controls: the training mean profile and kNN regression (k=15) in a 50-component SVD of the
  source (log1p CP10k for counts, binarised for ATAC).

Usage::

    python benchmarks/translation.py --dataset snareseq_mop \\
        --base-model models/snareseq_mop_faithful --peer-model models/snareseq_mop_multivi
    python benchmarks/translation.py --dataset neurips2021_cite_starter --architecture small
    python benchmarks/translation.py --quick
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import scvi
from _common import open_results, read, share_autoencoder, split
from scipy import sparse

from scdx_scvi import SCDX
from scdx_scvi.metrics import (
    chance_levels,
    knn_prediction,
    mean_profile_prediction,
    translation_scores,
)

LABELS_KEY = "cell_type"
#: The default of ``get_translated_modality``, and the sampling alternative.
DEFAULT_METHOD = "learned, conditional mean (sampler='mean', 1 evaluation)"
SAMPLE = {"sampler": "dpm++2m"}  # the package default of steps


# ----------------------------------------------------------------------------- scoring


def score(target: str, observed, predicted: np.ndarray) -> dict:
    """Translation quality of one target modality on the same cells (the package's scores)."""
    scores, _ = translation_scores(observed, predicted, target)
    chance = {f"chance_{k}": v for k, v in chance_levels(observed, target).items()}
    return {**scores, **chance}


def directions(mods: list[str]) -> list[tuple[str, str]]:
    other = "atac" if "atac" in mods else "protein"
    return [(other, "rna"), ("rna", other)]


# ----------------------------------------------------------------------------- peers


def multivi_translate(model, test: md.MuData, source: str, target: str) -> np.ndarray:
    """MultiVI's prediction of ``target`` for test cells whose ``target`` is hidden (zeros)."""
    query = test.copy()
    query.mod[target].X = sparse.csr_matrix(query.mod[target].shape, dtype=np.float32)
    query.obs["_indices"] = np.arange(query.n_obs)
    if target == "rna":
        return 1e4 * model.get_normalized_expression(query, return_numpy=True)
    return model.get_normalized_accessibility(query, return_numpy=True)


def train_multivi(train: md.MuData, epochs: int):
    data = train.copy()
    scvi.model.MULTIVI.setup_mudata(data, modalities={"rna_layer": "rna", "atac_layer": "atac"})
    model = scvi.model.MULTIVI(data)
    model.train(max_epochs=epochs, enable_progress_bar=False)
    return model


def totalvi_rna_to_protein(train: md.MuData, test: md.MuData, epochs: int) -> np.ndarray:
    """totalVI imputation: test cells join training as a batch whose proteins are missing."""
    rna = ad.concat([train["rna"], test["rna"]])
    protein = ad.concat([train["protein"], test["protein"]])
    is_train = (np.arange(protein.n_obs) < train.n_obs).astype(np.float32)
    dense = protein.X.toarray() if sparse.issparse(protein.X) else np.asarray(protein.X)
    protein.X = dense * is_train[:, None]  # totalVI's protein priors index a dense matrix
    data = md.MuData({"rna": rna, "protein": protein})
    data.obs["split"] = ["train"] * train.n_obs + ["query"] * test.n_obs
    scvi.model.TOTALVI.setup_mudata(
        data,
        batch_key="split",
        modalities={"rna_layer": "rna", "protein_layer": "protein", "batch_key": None},  # fmt: skip
    )
    model = scvi.model.TOTALVI(data)
    model.train(max_epochs=epochs, enable_progress_bar=False)
    _, prot = model.get_normalized_expression(
        indices=np.arange(train.n_obs, data.n_obs), transform_batch="train", return_numpy=True
    )
    return 1e4 * prot / prot.sum(1, keepdims=True)


# ----------------------------------------------------------------------------- SCDX


def scdx_model(data: md.MuData, args, condition_prob: float) -> SCDX:
    SCDX.setup_mudata(data, labels_key=LABELS_KEY)
    return SCDX(
        data, architecture=args.architecture, n_channels=args.n_channels,
        condition_prob=condition_prob, latent_scaling=args.latent_scaling,
        prediction=args.prediction, denoiser=args.denoiser,
    )  # fmt: skip


def translate(model: SCDX, test: md.MuData, source: str, target: str, **kwargs) -> np.ndarray:
    """The user's call: an AnnData of the source modality only in, the target out."""
    query = test[source].copy()
    return model.get_translated_modality(
        query, source, target, seed=0, return_type="numpy", **kwargs
    )


def via(model: SCDX, cells: md.MuData, source: str, target: str, **kwargs):
    """A deferred :func:`translate` call (timed by the caller)."""
    return lambda: translate(model, cells, source, target, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_mop")
    parser.add_argument("--architecture", default="default")
    parser.add_argument("--n-channels", type=int, default=64, help="U-Net base width C")
    parser.add_argument("--ae-epochs", type=int, default=25)
    parser.add_argument("--diffusion-steps", type=int, default=4000)
    parser.add_argument("--condition-prob", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=1e-4, help="diffusion learning rate")
    parser.add_argument("--latent-scaling", default="scalar", choices=["scalar", "per_dim"])
    parser.add_argument("--prediction", default="epsilon", choices=["epsilon", "v"])
    parser.add_argument("--denoiser", default="faithful", choices=["faithful", "improved"])
    parser.add_argument("--peer-epochs", type=int, default=100)
    parser.add_argument("--base-model", default=None, help="saved SCDX whose autoencoder is used")
    parser.add_argument("--peer-model", default=None, help="saved MultiVI")
    parser.add_argument("--learned-model", default=None, help="saved SCDX to score, not trained")
    parser.add_argument("--n-zero-shot", type=int, default=256)
    parser.add_argument("--zero-shot-steps", type=int, default=1000)
    parser.add_argument(
        "--skip",
        default="",
        help="comma list of: learned,sample,mean5,controls,zero_shot,mosaic,peer",
    )
    parser.add_argument("--save-dir", default=None, help="save the learned model here")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.architecture, args.ae_epochs, args.diffusion_steps, args.n_channels = (
            "small",
            2,
            20,
            16,
        )
        args.peer_epochs, args.n_zero_shot, args.zero_shot_steps = 2, 16, 10
    skip = set(filter(None, args.skip.split(",")))
    warnings.filterwarnings("ignore")
    scvi.settings.seed = 0

    mdata = read(args.dataset)
    train, test = split(mdata)
    mods = [m for m in ("rna", "atac", "protein") if m in mdata.mod]
    results = open_results("translation.py", args, train, test)

    def run(model_name: str, source: str, target: str, cells: md.MuData, fn, **extra) -> None:
        start = time.perf_counter()
        predicted = fn()
        seconds = time.perf_counter() - start
        row = {"model": model_name, "direction": f"{source}->{target}", "n_cells": cells.n_obs,
               "seconds": seconds, "cells_per_second": cells.n_obs / seconds, **extra}  # fmt: skip
        results.record({**row, **score(target, cells[target].X, predicted)})

    # base model: its autoencoder is shared by the learned model
    if "learned" not in skip and not args.learned_model:
        if args.base_model:
            base = SCDX.load(args.base_model, adata=train.copy())
        else:
            base = scdx_model(train.copy(), args, condition_prob=0.0)
            base.train_autoencoder(max_epochs=args.ae_epochs, enable_progress_bar=False)

    if "learned" not in skip and args.learned_model:
        learned, train_seconds = SCDX.load(args.learned_model, adata=train.copy()), None
    elif "learned" not in skip:
        learned = scdx_model(train.copy(), args, condition_prob=args.condition_prob)
        share_autoencoder(base, learned)
        start = time.perf_counter()
        learned.train_diffusion(
            max_steps=args.diffusion_steps, lr=args.lr, enable_progress_bar=False
        )
        train_seconds = time.perf_counter() - start
        if args.save_dir:
            learned.save(Path(args.save_dir) / f"{args.dataset}_learned", overwrite=True)
    for source, target in directions(mods) if "learned" not in skip else ():
        run("SCDX-learned", source, target, test, via(learned, test, source, target),
            train_seconds=train_seconds, method=DEFAULT_METHOD)  # fmt: skip
        if "sample" not in skip:
            run("SCDX-learned-sample", source, target, test,
                via(learned, test, source, target, **SAMPLE),
                method="learned dpm++2m 25")  # fmt: skip
        if "mean5" not in skip:
            run("SCDX-learned-mean5", source, target, test,
                via(learned, test, source, target, n_samples=5, **SAMPLE),
                method="learned dpm++2m 25, mean of 5 samples")  # fmt: skip

    for source, target in directions(mods) if "controls" not in skip else ():
        run("mean-profile", source, target, test, lambda t=target: mean_profile_prediction(
            train[t].X, test.n_obs, t))  # fmt: skip
        run("kNN-regression", source, target, test, lambda s=source, t=target: knn_prediction(
            train[s].X, train[t].X, test[s].X, s, t))  # fmt: skip

    if not {"zero_shot", "learned"} & skip:
        order = np.random.default_rng(0).permutation(test.n_obs)[: args.n_zero_shot]
        subset = test[np.sort(order)].copy()
        for source, target in directions(mods):
            run("SCDX-learned", source, target, subset, via(learned, subset, source, target),
                method=DEFAULT_METHOD, subset=True)  # fmt: skip
            run("SCDX-learned-sample", source, target, subset,
                via(learned, subset, source, target, **SAMPLE),
                method="learned dpm++2m 25", subset=True)  # fmt: skip
            for method in ("replacement", "guidance"):
                fn = via(
                    learned, subset, source, target, method=method, n_steps=args.zero_shot_steps
                )
                run(f"SCDX-{method}", source, target, subset, fn,
                    method=f"{method} ddpm {args.zero_shot_steps}", subset=True)  # fmt: skip

    if "mosaic" not in skip:
        other = directions(mods)[1][1]
        data = train.copy()
        hidden = np.random.default_rng(1).random(data.n_obs) < 0.5
        keep = sparse.diags((~hidden).astype(np.float32))
        data.mod[other].X = sparse.csr_matrix(keep @ sparse.csr_matrix(data[other].X))
        mosaic = scdx_model(data, args, condition_prob=args.condition_prob)
        start = time.perf_counter()
        mosaic.train(max_epochs=args.ae_epochs, max_steps_diffusion=args.diffusion_steps,
                     diffusion_kwargs={"lr": args.lr}, enable_progress_bar=False)  # fmt: skip
        train_seconds = time.perf_counter() - start
        for source, target in directions(mods):
            run("SCDX-learned-mosaic", source, target, test, via(mosaic, test, source, target),
                train_seconds=train_seconds, hidden_share=float(hidden.mean()),
                method=DEFAULT_METHOD)  # fmt: skip
    if "peer" not in skip:
        if "atac" in mods:
            start = time.perf_counter()
            if args.peer_model:
                peer = scvi.model.MULTIVI.load(args.peer_model, adata=train.copy())
            else:
                peer = train_multivi(train, args.peer_epochs)
            train_seconds = time.perf_counter() - start
            for source, target in directions(mods):
                run("MULTIVI", source, target, test, lambda s=source, t=target: multivi_translate(
                    peer, test, s, t), train_seconds=train_seconds)  # fmt: skip
        else:
            run("TOTALVI", "rna", "protein", test,
                lambda: totalvi_rna_to_protein(train, test, args.peer_epochs))  # fmt: skip

    print(f"wrote {results.path}")


if __name__ == "__main__":
    main()
