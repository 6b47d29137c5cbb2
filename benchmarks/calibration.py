"""Calibration of sampled translations (``n_samples > 1``) of a benchmark-of-record model.

The model saved by ``run.py --save-dir`` (trained here with ``SCDX(mdata)`` and ``model.train()``
and saved there if the folder has none) translates the held-out cells of the canonical split
``--n-samples`` times (``--sampler``, DPM-Solver++ by default, with its default steps, one
seed per draw; ``--cells train`` scores training cells instead), once with the calibrated
spread (the default) and once with the diffusion's learned spread (``spread="learned"``). What
the samples should cover is the target the same decoder gives from the cell's own measured target
(its autoencoder reconstruction, ``get_normalized_modalities``): if the diffusion models what
the source leaves undetermined, a central interval of the samples holds it at about its nominal
level (:func:`scdx_scvi.metrics.interval_coverage`), with an interval width that is small next
to the spread of the target between cells if the source is informative.

Usage::

    python benchmarks/calibration.py --dataset snareseq_mop --load-dir <models folder>
"""

from __future__ import annotations

import argparse
from itertools import product
from pathlib import Path

import numpy as np
import scvi
from _common import RESULTS, Results, provenance, read, split

from scdx_scvi import SCDX
from scdx_scvi.metrics import interval_coverage, translation_directions
from scdx_scvi.module._latent_diffusion import SPREADS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="neurips2021_bmmc_cite_starter")
    parser.add_argument("--load-dir", default="benchmarks/models/bench")
    parser.add_argument("--n-samples", type=int, default=20)
    parser.add_argument("--max-cells", type=int, default=500, help="held-out cells scored")
    parser.add_argument("--sampler", default="dpm++2m", choices=["dpm++2m", "ddim", "ddpm"])
    parser.add_argument("--n-steps", type=int, default=None, help="default: the sampler's")
    parser.add_argument("--cells", default="test", choices=["test", "train"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    scvi.settings.seed = 0
    train, test = split(read(args.dataset))
    saved = Path(args.load_dir) / f"{args.dataset}_scdx"
    if saved.exists():
        model = SCDX.load(saved, adata=train.copy())
    else:
        data = train.copy()
        SCDX.setup_mudata(data, labels_key="cell_type" if "cell_type" in data.obs else None)
        model = SCDX(data)
        model.train(enable_progress_bar=False)
        model.save(saved)
    scored = test if args.cells == "test" else train
    cells = scored[np.arange(min(scored.n_obs, args.max_cells))].copy()
    default_out = (
        f"calibration_{args.dataset}"
        + ("" if args.sampler == "dpm++2m" and args.n_steps is None else f"_{args.sampler}")
        + ("" if args.cells == "test" else "_train")
    )
    out = Path(args.out) if args.out else RESULTS / f"{default_out}.json"
    results = Results(out, {
        "dataset": args.dataset, "n_cells": int(cells.n_obs), "n_samples": args.n_samples,
        "sampler": args.sampler, "n_steps": args.n_steps, "cells": args.cells,
        "translation_spread": getattr(model, "translation_spread_scores_", None),
        **provenance("calibration.py"),
    })  # fmt: skip
    reconstructed = model.get_normalized_modalities(cells)
    diffusion = model.module.diffusion
    for (source, target), spread in product(translation_directions(model.modalities), SPREADS):
        draws = np.stack([
            model.get_translated_modality(
                cells[model.modality_names[source]].copy(), source, target,
                sampler=args.sampler, n_steps=args.n_steps, seed=seed, spread=spread,
                return_type="numpy",
            )
            for seed in range(args.n_samples)
        ])  # fmt: skip
        truth = reconstructed[target]
        if target != "atac":  # counts per 10k: compare on the log scale of the metrics
            draws, truth = np.log1p(draws), np.log1p(truth)
        results.record({
            "direction": f"{source}->{target}", "spread": spread,
            "factor": diffusion.spread_factor([source], target) if spread == "calibrated" else 1.0,
            **interval_coverage(draws, truth),
        })  # fmt: skip


if __name__ == "__main__":
    main()
