"""The stage-1 dispersion learning rate against the realism of the autoencoder's reconstructions.

For each ``--dispersion-lr`` (``none``: the dispersions train with the network, at its rate and
weight decay, as in the reference), stage 1 of ``SCDX(mdata)`` is trained on the training cells
of the canonical split and every held-out cell is drawn from the likelihoods
(``posterior_predictive_sample``): the ceiling of generation realism. Scored per count modality
with ``generation_score_set`` (real-vs-drawn classifier AUC, with the real-vs-real floor) and
its diagnostics, beside the validation NLL and the quantiles of the fitted dispersions.

Usage::

    python benchmarks/dispersion.py --dataset eccite_citefuse --dispersion-lr none 0.01 0.1
"""

from __future__ import annotations

import argparse

import numpy as np
import scvi
import torch
from _common import Results, measured, open_results, read, split

from scdx_scvi import SCDX
from scdx_scvi.metrics import REFERENCE_NAME, generation_score_set, reference_sample
from scdx_scvi.metrics._tasks import GENERATION_SEEDS


def _rate(text: str) -> float | None:
    return None if text == "none" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="eccite_citefuse")
    parser.add_argument("--dispersion-lr", nargs="+", default=["none", "0.1"])
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the budget's")
    parser.add_argument("--generation-seeds", type=int, default=len(GENERATION_SEEDS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = split(read(args.dataset))
    results: Results = open_results(__file__, args, train, test)
    for text in args.dispersion_lr:
        rate = _rate(text)
        scvi.settings.seed = 0
        data = train.copy()
        SCDX.setup_mudata(data)
        model = SCDX(data)
        # the reference's single AdamW group, or the dispersions in a group of their own
        options = {"plan_kwargs": {"optimizer": "AdamW"}} if rate is None else {}
        _, seconds, _ = measured(
            lambda m=model, r=rate, o=options: m.train_autoencoder(
                max_epochs=args.max_epochs, dispersion_lr=r, enable_progress_bar=False, **o
            )
        )
        draws = model.posterior_predictive_sample(test, seed=0)
        real = reference_sample(train.n_obs, test.n_obs)  # the real-vs-real floor
        row = {
            "dispersion_lr": rate,
            "seconds": seconds,
            "autoencoder_epochs": model.epochs_trained["autoencoder"],
            "validation_nll": {
                key: float(values.min().iloc[0])
                for key, values in model.history.items()
                if key.startswith("reconstruction_loss_") and key.endswith("_validation")
            },
        }
        for m in model.modalities:
            likelihood = model.module.likelihoods[m]
            if likelihood.binary:  # ATAC: no dispersion
                continue
            name = model.modality_names[m]
            sets = {"reconstructions": draws[m], REFERENCE_NAME: train[name].X[real]}
            scores = generation_score_set(
                test[name].X,
                sets,
                m,
                seeds=GENERATION_SEEDS[: args.generation_seeds],
                paired=("reconstructions",),
            )
            theta = likelihood.log_theta.detach().exp().cpu().numpy()
            row[m] = {
                "classifier_auc": scores["reconstructions"]["classifier_auc"],
                "real_vs_real_auc": scores[REFERENCE_NAME]["classifier_auc"],
                "diagnostics": scores["reconstructions"]["diagnostics"],
                "dispersion_quantiles": {
                    f"{q}%": float(np.percentile(theta, q)) for q in (5, 50, 95)
                },
            }
        results.record(row)


if __name__ == "__main__":
    main()
