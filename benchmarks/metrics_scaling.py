"""Time and memory of every metric of ``scdx_scvi.metrics`` at 50,000 cells.

Synthetic data with the shapes of a large benchmark: paired RNA (cells x genes, sparse
observed counts, dense float32 predictions), paired ATAC (sparse binary observations, dense
predicted probabilities) and two unpaired sets of cells x 50 PCs (real and generated, with cell
types). Each metric is run once with its defaults; a row gives its seconds and its peak memory
above the start (polled resident set), and the size of the dense O(n²) matrix that the chunked
computation avoids where there is one.

Usage::

    python benchmarks/metrics_scaling.py                  # 50k cells, 2k genes, 10k peaks
    python benchmarks/metrics_scaling.py --quick          # a small smoke run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import RESULTS, Results, measured, peak_memory_method, provenance
from scipy import sparse

from scdx_scvi.metrics import (
    auprc_per_feature,
    auroc_auprc_flat,
    auroc_per_feature,
    classifier_auc,
    energy_distance,
    foscttm,
    knn_label_transfer_accuracy,
    mixing_score,
    mmd_rbf,
    pearson_overall,
    pearson_per_cell,
    pearson_per_feature,
    per_group,
    rmse,
    spearman_per_cell,
    spearman_per_feature,
)

MIB = 2**20


def paired(n_cells: int, n_features: int, density: float, rng: np.random.Generator):
    """Sparse observations and a dense float32 prediction that tracks them."""
    observed = sparse.random(
        n_cells, n_features, density=density, format="csr", dtype=np.float32, random_state=rng
    )
    observed.data = np.ceil(observed.data * 5).astype(np.float32)
    predicted = rng.random((n_cells, n_features), dtype=np.float32) * 0.1
    predicted += observed.toarray() * 0.05  # an informative but noisy prediction
    return observed, predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=50_000)
    parser.add_argument("--n-genes", type=int, default=2_000)
    parser.add_argument("--n-peaks", type=int, default=10_000)
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument("--n-types", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.n_cells, args.n_genes, args.n_peaks, args.n_types = 600, 50, 80, 4
    header = {"settings": vars(args), "peak_memory": peak_memory_method()}
    results = Results(
        Path(args.out) if args.out else RESULTS / "metrics_scaling.json",
        {**header, **provenance("metrics_scaling.py")},
    )
    n = args.n_cells
    rng = np.random.default_rng(0)
    rna, rna_pred = paired(n, args.n_genes, 0.1, rng)
    atac, atac_pred = paired(n, args.n_peaks, 0.03, rng)
    atac.data[:] = 1.0
    real = rng.normal(size=(n, args.n_comps))
    generated = real + rng.normal(scale=0.5, size=real.shape)
    types = rng.integers(args.n_types, size=n).astype(str)
    metrics = {
        "pearson_per_cell": lambda: pearson_per_cell(rna, rna_pred),
        "pearson_per_feature": lambda: pearson_per_feature(rna, rna_pred),
        "pearson_overall": lambda: pearson_overall(rna, rna_pred),
        "spearman_per_cell": lambda: spearman_per_cell(rna, rna_pred),
        "spearman_per_feature": lambda: spearman_per_feature(rna, rna_pred),
        "rmse": lambda: rmse(rna, rna_pred),
        "auroc_per_feature": lambda: auroc_per_feature(atac, atac_pred),
        "auprc_per_feature": lambda: auprc_per_feature(atac, atac_pred),
        "auroc_auprc_flat": lambda: auroc_auprc_flat(atac, atac_pred),
        "foscttm": lambda: foscttm(generated, real),
        "knn_label_transfer_accuracy": lambda: knn_label_transfer_accuracy(
            real, types, generated, types
        ),
        "mmd_rbf": lambda: mmd_rbf(real, generated),
        "energy_distance": lambda: energy_distance(real, generated),
        "classifier_auc": lambda: classifier_auc(real, generated),
        "mixing_score": lambda: mixing_score(real, generated),
        "mmd_rbf per cell type": lambda: per_group(mmd_rbf, real, generated, types, types),
    }
    pairwise = {"foscttm": n * n, "mmd_rbf": 4 * n * n, "energy_distance": 4 * n * n}
    for name, fn in metrics.items():
        _, seconds, peak = measured(fn)
        row = {"metric": name, "n_cells": n, "seconds": seconds, "peak_mib": peak}
        if name in pairwise:
            row["dense_pairwise_mib"] = pairwise[name] * 8 / MIB
        results.record(row)
    print(f"wrote {results.path}")


if __name__ == "__main__":
    main()
