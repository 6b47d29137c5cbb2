"""Cost on a GPU, beside MultiVI: the snareseq_mop model of record and the 200k-peak case.

One command for a machine with a CUDA device; it measures time, not quality (the quality of the
same models is the benchmark of record, ``run.py``). Two parts, each timed phase by phase with
the CUDA allocator's peak:

1. ``snareseq_mop``: ``SCDX(mdata)`` trained with the package defaults (``model.train()`` in
   its two stages) and MultiVI (``--peer-epochs``) on the training cells of the canonical
   split; then, on the test cells, both translation directions (SCDX's conditional mean and
   MultiVI's imputation) and the generation of the test composition (SCDX) against MultiVI's
   posterior samples of the test cells.
2. The scaling case of ``scaling.py``: 20,000 synthetic cells x 200,000 peaks, one autoencoder
   epoch, 50 diffusion steps, 20,000 generated cells, and one MultiVI epoch.

Each row carries the CPU figure of record where one exists (``benchmark_snareseq_mop.json``,
``scaling.json``) and the speed-up. Refuses to run without a GPU unless ``--allow-cpu``
(for a smoke run with ``--quick``).

Usage::

    python benchmarks/gpu.py                    # about 8 minutes on one GPU
    python benchmarks/gpu.py --quick --allow-cpu    # a small shared set, tiny budgets
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import scvi
import torch
from _common import (
    RESULTS,
    Results,
    generation_request,
    measured,
    peak_memory_method,
    provenance,
    read,
    split,
)
from run import SCDX_NAME, parse_args, peer_samples, train_peer, train_scdx
from scaling import cell_types, paired_mudata, peer_epoch, simulate_atac, simulate_rna
from translation import multivi_translate

from scdx_scvi import SCDX


def cpu_record(name: str) -> dict:
    """The CPU rows of record: ``{(task, model, direction or phase): seconds}``."""
    path = RESULTS / name
    if not path.exists():
        return {}
    payload = json.loads(path.read_text())
    rows = payload.get("training", []) + payload.get("results", [])
    return {
        (r.get("task") or r.get("phase"), r.get("model"), r.get("direction") or r.get("n_peaks")):
        r["seconds"] for r in rows if "seconds" in r
    }  # fmt: skip


def snareseq_rows(args) -> list[dict]:
    """Train both models on snareseq_mop and time training, translation and generation."""
    train, test = split(read(args.dataset))
    # run.py's own training options and defaults, so that every option it passes is set
    options = parse_args(["--ae-epochs", "2", "--diffusion-steps", "20"] if args.quick else [])
    scdx, info = train_scdx(train, options, "cell_type")
    rows = [{"task": "training", "model": SCDX_NAME, "seconds": info["seconds"],
             "peak_mib": info["peak_mib"], "autoencoder_epochs": info["autoencoder_epochs"],
             "diffusion_steps": info["diffusion_steps"]}]  # fmt: skip
    peer, seconds, peak = measured(lambda: train_peer(train, ["rna", "atac"], args.peer_epochs))
    rows.append({"task": "training", "model": "MultiVI", "seconds": seconds, "peak_mib": peak,
                 "epochs": len(peer.history.get("elbo_train", []))})  # fmt: skip
    for source, target in (("rna", "atac"), ("atac", "rna")):
        calls = {
            SCDX_NAME: lambda s=source, t=target: scdx.get_translated_modality(
                test[s].copy(), s, t, seed=0, return_type="numpy"
            ),
            "MultiVI": lambda s=source, t=target: multivi_translate(peer, test, s, t),
        }
        for name, call in calls.items():
            _, seconds, peak = measured(call)
            rows.append({"task": "translation", "model": name, "direction": f"{source}->{target}",
                         "seconds": seconds, "cells_per_second": test.n_obs / seconds,
                         "peak_mib": peak})  # fmt: skip
    request, _ = generation_request(train, test, "cell_type")
    calls = {
        SCDX_NAME: lambda: scdx.generate(**request, sampler="dpm++2m", seed=0),
        "MultiVI posterior samples": lambda: peer_samples(peer, test, ["rna", "atac"]),
    }
    for name, call in calls.items():
        _, seconds, peak = measured(call)
        rows.append({"task": "generation", "model": name, "seconds": seconds,
                     "cells_per_second": test.n_obs / seconds, "peak_mib": peak})  # fmt: skip
    return rows


def scaling_rows(args) -> list[dict]:
    """The 200k-peak case of ``scaling.py`` with the package defaults, and one MultiVI epoch."""
    n_cells, n_genes, n_peaks = (500, 200, 2000) if args.quick else (20_000, 2_000, 200_000)
    rng = np.random.default_rng(0)
    types = cell_types(n_cells, 5, rng)
    mdata = paired_mudata(simulate_rna(types, n_genes, rng), simulate_atac(types, n_peaks, rng),
                          types)  # fmt: skip
    SCDX.setup_mudata(
        mdata, labels_key="cell_type", modalities={"rna_layer": "rna", "atac_layer": "atac"}
    )
    model = SCDX(mdata)
    phases = {
        "autoencoder": lambda: model.train_autoencoder(max_epochs=1, enable_progress_bar=False),
        "diffusion": lambda: model.train_diffusion(
            max_steps=50, early_stopping=False, enable_progress_bar=False
        ),
        "generate": lambda: model.generate(n_cells=n_cells, seed=0, n_steps=10),
        "MultiVI epoch": lambda: peer_epoch(mdata, 256),
    }
    rows = []
    for phase, call in phases.items():
        _, seconds, peak = measured(call)
        rows.append({"phase": phase, "n_cells": n_cells, "n_peaks": n_peaks, "seconds": seconds,
                     "peak_mib": peak})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_mop")
    parser.add_argument("--peer-epochs", type=int, default=100)
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (smoke)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        sys.exit("No CUDA device: this benchmark measures a GPU (pass --allow-cpu to smoke-test).")
    if args.quick:
        args.peer_epochs, args.dataset = 2, "neurips2021_bmmc_multiome_starter"
    warnings.filterwarnings("ignore")
    scvi.settings.seed = 0
    results = Results(
        Path(args.out) if args.out else RESULTS / "gpu.json",
        {"settings": vars(args), "peak_memory": peak_memory_method(), **provenance("gpu.py")},
    )  # fmt: skip
    record = cpu_record(f"benchmark_{args.dataset}.json")
    for row in snareseq_rows(args):
        cpu = record.get((row["task"], row["model"], row.get("direction")))
        results.record({"dataset": args.dataset, **row, "cpu_seconds": cpu,
                        "speed_up": cpu / row["seconds"] if cpu else None})  # fmt: skip
    record = cpu_record("scaling.json")
    for row in scaling_rows(args):
        model, phase = ("MultiVI", "autoencoder") if row["phase"] == "MultiVI epoch" else (
            "SCDX", row["phase"])  # fmt: skip
        cpu = record.get((phase, model, row["n_peaks"]))
        results.record({"dataset": "synthetic", **row, "cpu_seconds": cpu,
                        "speed_up": cpu / row["seconds"] if cpu else None})  # fmt: skip
    print(f"wrote {results.path}")


if __name__ == "__main__":
    main()
