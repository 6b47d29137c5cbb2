"""Conditional generation of paired cells: SCDX (faithful and improved denoiser) against MultiVI.

The test cells are the canonical split ``np.random.default_rng(0).random(n_obs) < 0.2``. SCDX is
trained on the other cells and asked for as many cells of each label as the test set has;
MultiVI, trained on the same cells, provides posterior samples of the test cells (z drawn from
q(z | x), counts from its likelihoods) as the peer. Per modality, in a PCA fitted on the real
test cells (log1p CP10k): multi-scale RBF MMD, energy distance, real-vs-generated random-forest
AUC (0.5 is ideal), kNN mixing, and the accuracy of a kNN classifier trained on the real test
cells at recovering the requested labels. Then generation throughput (cells/s) and the peak
resident memory above the baseline per sampler and step count.

Usage::

    python benchmarks/generation.py --dataset snareseq_mop
    python benchmarks/generation.py --quick     # a small smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import mudata as md
import numpy as np
import scvi
import torch
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial

from scdx_scvi import SCDX
from scdx_scvi.metrics import generation_scores, knn_label_transfer_accuracy, pca_projection

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
LABELS_KEY = "cell_type"


def split(mdata: md.MuData) -> tuple[md.MuData, md.MuData]:
    test = np.random.default_rng(0).random(mdata.n_obs) < 0.2
    return mdata[~test].copy(), mdata[test].copy()


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measured(fn):
    """Run ``fn``; return its result, the seconds and the peak memory above the start (MiB).

    On a GPU the peak is the allocator's; on the CPU the resident set size is polled.
    """
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss, peak = _rss_mib(), [0.0]
    done = threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.01)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    start = time.perf_counter()
    result = fn()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    if cuda:
        return result, seconds, (torch.cuda.max_memory_allocated() - base) / 2**20
    return result, seconds, max(peak[0], _rss_mib()) - base_rss


def score(real, generated, real_labels, requested_labels, args) -> dict:
    """Generation metrics of one modality (cells x features count matrices)."""
    scores = generation_scores(real, generated, n_comps=args.n_comps, seeds=(0, 1, 2))
    real_pcs, gen_pcs = pca_projection(real, generated, n_comps=args.n_comps)
    knn = knn_label_transfer_accuracy(real_pcs, real_labels, gen_pcs, requested_labels)
    return {**scores, "knn_label_accuracy": knn["accuracy"], "knn_label_macro_f1": knn["macro_f1"]}


def share_autoencoder(base: SCDX, model: SCDX) -> None:
    """Give ``model`` the trained autoencoder (weights and split) of ``base``."""
    state = {k: v for k, v in base.module.state_dict().items() if not k.startswith("diffusion.")}
    missing, unexpected = model.module.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("diffusion.") for k in missing)
    model.train_indices = base.train_indices
    model.validation_indices = base.validation_indices
    model.test_indices = base.test_indices
    model.is_trained_ = True


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
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument(
        "--throughput", default="ddim:50,ddim:100,dpm++2m:10,dpm++2m:25",
        help="sampler:steps pairs timed on --n-throughput cells (add ddpm:1000 on a GPU)",
    )  # fmt: skip
    parser.add_argument("--n-throughput", type=int, default=10_000)
    parser.add_argument(
        "--throughput-denoisers", default="faithful,improved", help="denoisers to time"
    )
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

    mdata = md.read_h5mu(DATA / args.dataset / f"{args.dataset}.h5mu")
    train, test = split(mdata)
    mods = [m for m in ("rna", "atac", "protein") if m in mdata.mod]
    test_labels = test.obs[LABELS_KEY].astype(str).to_numpy()
    names, counts = np.unique(test_labels, return_counts=True)
    requested = {label: int(n) for label, n in zip(names, counts, strict=True)}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    payload = {
        "dataset": args.dataset,
        "command": "python benchmarks/generation.py " + " ".join(sys.argv[1:]),
        "n_train": int(train.n_obs),
        "n_test": int(test.n_obs),
        "settings": vars(args),
        "commit": commit,
        "hardware": f"{platform.processor() or platform.machine()}, "
        f"{'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}",
        "results": [],
        "throughput": [],
    }
    out = Path(args.out) if args.out else RESULTS / f"generation_{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def record(row: dict, key: str = "results") -> None:
        payload[key].append(row)
        print(json.dumps(row), flush=True)
        out.write_text(json.dumps(payload, indent=2))

    base = None
    for denoiser in args.denoisers.split(",") if args.denoisers else ():
        data = train.copy()
        SCDX.setup_mudata(data, labels_key=LABELS_KEY)
        model = SCDX(
            data, architecture=args.architecture, denoiser=denoiser, n_channels=args.n_channels
        )
        start = time.perf_counter()
        if base is None:  # one autoencoder, shared by every denoiser
            model.train_autoencoder(max_epochs=args.ae_epochs, enable_progress_bar=False)
            base = model
        else:
            share_autoencoder(base, model)
        model.train_diffusion(max_steps=args.diffusion_steps, enable_progress_bar=False)
        train_seconds = time.perf_counter() - start
        if args.save_dir:
            model.save(Path(args.save_dir) / f"{args.dataset}_{denoiser}", overwrite=True)
        generated, seconds, _ = measured(
            lambda model=model: model.generate(
                labels=requested, sampler=args.sampler, n_steps=args.steps, seed=0
            )
        )
        gen_labels = generated.obs[LABELS_KEY].astype(str).to_numpy()
        for m in mods:
            row = score(test[m].X, generated[m].X, test_labels, gen_labels, args)
            record({"model": f"SCDX-{denoiser}", "modality": m, "train_seconds": train_seconds,
                    "diffusion_steps": model.trainer.global_step,
                    "generate_seconds": seconds, **row})  # fmt: skip
        for pair in args.throughput.split(",") if denoiser in args.throughput_denoisers else ():
            sampler, steps = pair.split(":")
            labels = list(np.random.default_rng(0).choice(test_labels, args.n_throughput))
            _, seconds, peak = measured(
                lambda model=model, sampler=sampler, steps=steps, labels=labels: model.generate(
                    labels=labels, sampler=sampler, n_steps=int(steps), seed=0
                )
            )
            record({"model": f"SCDX-{denoiser}", "sampler": sampler, "n_steps": int(steps),
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
            row = score(test[m].X, samples[m], test_labels, test_labels, args)
            record({"model": "MULTIVI-posterior", "modality": m, "train_seconds": train_seconds,
                    "generate_seconds": seconds, **row})  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
