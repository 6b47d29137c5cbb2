"""Conditional generation of paired cells: SCDX (faithful and improved denoiser) against MultiVI.

The test cells are the canonical split ``np.random.default_rng(0).random(n_obs) < 0.2``. SCDX is
trained on the other cells and asked for as many cells of each label as the test set has;
MultiVI, trained on the same cells, provides posterior samples of the test cells (z drawn from
q(z | x), counts from its likelihoods) as the peer. Per modality, against the real
test cells, scored by ``scdx_scvi.metrics.generation_score_set`` (both sets alike: equal sizes,
one embedding fitted on both, a cross-validated classifier): multi-scale RBF MMD, energy
distance, real-vs-generated random-forest AUC (0.5 is ideal), kNN mixing, and the accuracy of a
kNN classifier trained on the real test cells at recovering the requested labels. Then
generation throughput (cells/s) and the peak resident memory above the baseline per sampler and
step count. (MultiVI's posterior samples go through MultiVI's own data loader: it has no public
posterior-predictive sampler for ATAC.)

Usage::

    python benchmarks/generation.py --dataset snareseq_mop
    python benchmarks/generation.py --quick     # a small smoke run
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import mudata as md
import numpy as np
import scvi
import torch
from _common import measured, open_results, read, share_autoencoder, split
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial

from scdx_scvi import SCDX
from scdx_scvi.metrics import generation_score_set

LABELS_KEY = "cell_type"


def score(
    real, generated, real_labels, requested_labels, modality: str, args, paired: bool = False
) -> dict:
    """Generation metrics of one modality (the package's score set), with label recovery.

    ``paired``: ``generated`` holds draws of the ``real`` cells, row by row.
    """
    scores = generation_score_set(
        real, {"set": generated}, modality, real_labels, {"set": requested_labels},
        n_comps=args.n_comps, paired=("set",) if paired else (),
    )  # fmt: skip
    return scores["set"]


def multivi_posterior_samples(model, test: md.MuData) -> dict[str, np.ndarray]:
    """Counts drawn from MultiVI's likelihoods at z ~ q(z | x) of the test cells."""
    test.obs["_indices"] = np.arange(test.n_obs)
    adata = model._validate_anndata(test)
    module = model.module
    rna, atac = [], []
    with torch.no_grad():
        for tensors in model._make_data_loader(adata=adata, batch_size=256):
            inference, generative = module.forward(tensors, compute_loss=False)
            if module.gene_likelihood == "zinb":
                px = ZeroInflatedNegativeBinomial(
                    mu=generative["px_rate"],
                    theta=generative["px_r"],
                    zi_logits=generative["px_dropout"],
                )
            else:
                px = NegativeBinomial(mu=generative["px_rate"], theta=generative["px_r"])
            rna.append(px.sample().cpu().numpy())
            factors = (
                torch.sigmoid(module.region_factors) if module.region_factors is not None else 1
            )
            p = generative["p"] * inference["libsize_acc"] * factors
            atac.append(torch.bernoulli(p.clamp(0, 1)).cpu().numpy())
    return {"rna": np.concatenate(rna), "atac": np.concatenate(atac)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_mop")
    parser.add_argument("--denoisers", default="faithful,improved", help="'' for the peer only")
    parser.add_argument("--architecture", default="default")
    parser.add_argument("--n-channels", type=int, default=128, help="U-Net base width C")
    parser.add_argument("--ae-epochs", type=int, default=100)
    parser.add_argument("--diffusion-steps", type=int, default=30_000)
    parser.add_argument("--peer-epochs", type=int, default=200)
    parser.add_argument("--sampler", default="dpm++2m")
    parser.add_argument("--steps", type=int, default=None, help="default: the package's")
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument(
        "--throughput", default="ddim:50,ddim:100,dpm++2m:10,dpm++2m:25",
        help="sampler:steps pairs timed on --n-throughput cells (add ddpm:1000 on a GPU)",
    )  # fmt: skip
    parser.add_argument("--n-throughput", type=int, default=10_000)
    parser.add_argument(
        "--throughput-denoisers", default="faithful,improved", help="denoisers to time"
    )
    parser.add_argument("--base-model", default=None, help="saved SCDX whose autoencoder is used")
    parser.add_argument("--latent-scaling", default="scalar", choices=["scalar", "per_dim"])
    parser.add_argument("--condition-prob", type=float, default=0.5)
    parser.add_argument(
        "--reference-diffusion", dest="gaussian_residual", action="store_false",
        help="plain noise prediction (gaussian_residual=False), as the reference",
    )  # fmt: skip
    parser.add_argument("--load", default="", help="comma list of saved SCDX models to score")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip MultiVI")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", default=None)
    parser.add_argument("--save-dir", default=None, help="save each trained SCDX model here")
    args = parser.parse_args()
    if args.quick:
        args.architecture, args.ae_epochs, args.diffusion_steps = "small", 2, 20
        args.peer_epochs, args.steps, args.n_comps = 2, 4, 10
        args.throughput, args.n_throughput, args.n_channels = "ddim:4,dpm++2m:4", 50, 16
    warnings.filterwarnings("ignore")
    scvi.settings.seed = 0

    mdata = read(args.dataset)
    train, test = split(mdata)
    mods = [m for m in ("rna", "atac", "protein") if m in mdata.mod]
    test_labels = test.obs[LABELS_KEY].astype(str).to_numpy()
    names, counts = np.unique(test_labels, return_counts=True)
    requested = {label: int(n) for label, n in zip(names, counts, strict=True)}
    results = open_results("generation.py", args, train, test)
    record = results.record

    base = None
    if args.base_model:  # its autoencoder is shared by every trained denoiser
        base = SCDX.load(args.base_model, adata=train.copy())
    entries = [("train", d) for d in args.denoisers.split(",") if d]
    entries += [("load", path) for path in args.load.split(",") if path]
    for kind, what in entries:
        start = time.perf_counter()
        if kind == "load":
            model, name = SCDX.load(what, adata=train.copy()), Path(what).name
        else:
            data = train.copy()
            SCDX.setup_mudata(data, labels_key=LABELS_KEY)
            model = SCDX(
                data, architecture=args.architecture, denoiser=what, n_channels=args.n_channels,
                latent_scaling=args.latent_scaling, condition_prob=args.condition_prob,
                gaussian_residual=args.gaussian_residual,
            )  # fmt: skip
            if base is None:  # one autoencoder, shared by every denoiser
                model.train_autoencoder(max_epochs=args.ae_epochs, enable_progress_bar=False)
                base = model
            else:
                share_autoencoder(base, model)
            model.train_diffusion(max_steps=args.diffusion_steps, enable_progress_bar=False)
            name = what
            if args.save_dir:
                model.save(Path(args.save_dir) / f"{args.dataset}_{what}", overwrite=True)
        train_seconds = time.perf_counter() - start if kind == "train" else None
        generated, seconds, _ = measured(
            lambda model=model: model.generate(
                labels=requested, sampler=args.sampler, n_steps=args.steps, seed=0
            )
        )
        gen_labels = generated.obs[LABELS_KEY].astype(str).to_numpy()
        for m in mods:
            row = score(test[m].X, generated[m].X, test_labels, gen_labels, m, args)
            record({"model": f"SCDX-{name}", "modality": m, "train_seconds": train_seconds,
                    "diffusion_steps": model.epochs_trained["diffusion_steps"],
                    "generate_seconds": seconds, **row})  # fmt: skip
        for pair in args.throughput.split(",") if name in args.throughput_denoisers else ():
            sampler, steps = pair.split(":")
            labels = list(np.random.default_rng(0).choice(test_labels, args.n_throughput))
            _, seconds, peak = measured(
                lambda model=model, sampler=sampler, steps=steps, labels=labels: model.generate(
                    labels=labels, sampler=sampler, n_steps=int(steps), seed=0
                )
            )
            record({"model": f"SCDX-{name}", "sampler": sampler, "n_steps": int(steps),
                    "n_cells": args.n_throughput, "seconds": seconds,
                    "cells_per_second": args.n_throughput / seconds, "peak_mib": peak},
                   "throughput")  # fmt: skip

    if "atac" in mods and args.peer:
        peer = train.copy()
        scvi.model.MULTIVI.setup_mudata(peer, modalities={"rna_layer": "rna", "atac_layer": "atac"})
        model = scvi.model.MULTIVI(peer)
        start = time.perf_counter()
        model.train(max_epochs=args.peer_epochs, enable_progress_bar=False)
        train_seconds = time.perf_counter() - start
        if args.save_dir:
            model.save(Path(args.save_dir) / f"{args.dataset}_multivi", overwrite=True)
        samples, seconds, _ = measured(lambda: multivi_posterior_samples(model, test.copy()))
        for m in ("rna", "atac"):
            row = score(test[m].X, samples[m], test_labels, test_labels, m, args, paired=True)
            record({"model": "MULTIVI-posterior", "modality": m, "train_seconds": train_seconds,
                    "generate_seconds": seconds, **row})  # fmt: skip
    print(f"wrote {results.path}")


if __name__ == "__main__":
    main()
