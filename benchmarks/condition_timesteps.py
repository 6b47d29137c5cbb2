"""Translation at each timestep of the source (noisy conditions), against the one chosen.

The SCDX model saved by ``run.py --save-dir`` keeps its autoencoder; its diffusion is trained
again from a fresh initialisation with the current defaults (``condition_noise``, the noisy
conditions of the user guide), which also chooses, on the validation cells, the timestep at
which each source enters the denoiser. The held-out cells of the canonical split are then
translated in every direction with the source at the chosen timestep and at each of
``--levels`` (the headline metric: per-feature Pearson for RNA and protein, per-peak AUROC for
ATAC), and the first ``--train-cells`` training cells at the chosen timestep and at 0, which
shows how much better the model does on the cells it was trained on.

Usage::

    python benchmarks/run.py --dataset snareseq_mop --save-dir benchmarks/models/bench
    python benchmarks/condition_timesteps.py --dataset snareseq_mop
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scvi
from _common import condition_timesteps, headline, open_results, read, retrain_diffusion, split

from scdx_scvi import SCDX
from scdx_scvi.metrics import translation_directions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="neurips2021_bmmc_cite_starter")
    parser.add_argument("--load-dir", default="benchmarks/models/bench")
    parser.add_argument("--levels", default="0,125,250,375,500")
    parser.add_argument("--train-cells", type=int, default=2000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    scvi.settings.seed = 0
    mdata = read(args.dataset)
    train, test = split(mdata)
    results = open_results(__file__, args, train, test)
    saved = SCDX.load(Path(args.load_dir) / f"{args.dataset}_scdx", adata=train.copy())
    model, seconds, _ = retrain_diffusion(saved)
    diffusion = model.module.diffusion
    chosen = diffusion.condition_timesteps.clone()
    results.record({
        "task": "training", "diffusion_seconds": seconds,
        "condition_noise": diffusion.condition_noise, "chosen": condition_timesteps(model),
        "validation_scores": model.condition_timestep_scores_,
    })  # fmt: skip
    rows = np.random.default_rng(0).permutation(train.n_obs)[: args.train_cells]
    seen = train[np.sort(rows)].copy()
    levels = [int(level) for level in args.levels.split(",")]
    mods = list(model.modalities)
    for source, target in translation_directions(mods):
        index = diffusion.modalities.index(source)
        for level in [None, *levels]:
            diffusion.condition_timesteps[:] = chosen
            if level is not None:
                diffusion.condition_timesteps[index] = level
            cells = {"held-out": test}
            if level in (None, 0):  # also the cells the model was trained on
                cells["training"] = seen
            for name, data in cells.items():
                predicted = model.get_translated_modality(
                    data, source, target, seed=0, return_type="numpy"
                )
                results.record({
                    "task": "translation", "direction": f"{source}->{target}", "cells": name,
                    "timestep": int(diffusion.condition_timesteps[index]),
                    "chosen": level is None, "score": headline(data[target].X, predicted, target),
                })  # fmt: skip
    diffusion.condition_timesteps[:] = chosen


if __name__ == "__main__":
    main()
