"""Accessibility as dense or thresholded sparse output: memory, time and what the threshold drops.

A saved SCDX model of a data set (``run.py --save-dir``) gives, for each ``--thresholds`` value
and without one (dense), the accessibility of the training cells
(``get_normalized_accessibility``) and the RNA → ATAC translation of the held-out cells
(``get_translated_modality``), each timed in turns with the others, three rounds (median seconds,
largest peak memory above the start). Each row records the share of values kept, the output's
size in memory and, for the translation, the per-peak AUROC and AUPRC against the held-out
cells' measured accessibility (a threshold ties the values below it at 0).

Usage::

    python benchmarks/sparse_outputs.py --dataset snareseq_mop --load-dir <models folder>
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _common import measured_together, open_results, read, split
from scaling import MIB, sparse_mib
from scipy import sparse

from scdx_scvi import SCDX
from scdx_scvi.metrics import auprc_per_feature, auroc_per_feature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_mop")
    parser.add_argument("--load-dir", required=True, help="folder of run.py --save-dir")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.001, 0.003, 0.01, 0.05])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    train, test = split(read(args.dataset))
    results = open_results(__file__, args, train, test)
    model = SCDX.load(Path(args.load_dir) / f"{args.dataset}_scdx", adata=train.copy())
    measured_atac = (test["atac"].X > 0).astype(np.float32)
    settings = {"dense": None, **{f"threshold {t}": t for t in args.thresholds}}
    calls = {}
    for name, threshold in settings.items():
        calls["getter", name] = lambda t=threshold: model.get_normalized_accessibility(
            train, threshold=t, return_numpy=True
        )
        calls["translation", name] = lambda t=threshold: model.get_translated_modality(
            test["rna"].copy(), "rna", "atac", seed=0, threshold=t, return_type="numpy"
        )
    runs = measured_together(calls, repeats=3)
    for (task, name), (values, seconds, peak) in runs.items():
        row = {
            "task": task, "output": name, "threshold": settings[name],
            "n_cells": int(values.shape[0]), "seconds": seconds, "peak_mib": peak,
            "kept_share": (values.nnz if sparse.issparse(values) else values.size)
            / (values.shape[0] * values.shape[1]),
            "output_mib": sparse_mib(values) if sparse.issparse(values) else values.nbytes / MIB,
        }  # fmt: skip
        if task == "translation":
            row["auroc_per_peak"] = float(np.nanmean(auroc_per_feature(measured_atac, values)))
            row["auprc_per_peak"] = float(np.nanmean(auprc_per_feature(measured_atac, values)))
        results.record(row)


if __name__ == "__main__":
    main()
