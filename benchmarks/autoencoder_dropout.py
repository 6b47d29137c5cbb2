"""Stage-1 options against held-out reconstruction, the cross-modal floor and draw realism.

For each ``--dropout-rate``, ``--protein-likelihood``, ``--encoder-input``,
``--reconstruction-weights``, ``--architecture`` and ``--early-stopping``, stage 1 of
``SCDX(mdata)`` (every other option the package's default; the batch registered where the data
have one) is trained on the training cells of the canonical split, and scored on the held-out
cells by:

* held-out reconstruction, the headline translation metric of each modality;
* the floor of each source latent: kNN and ridge regression from it to the other modality
  (:func:`latent_floor`), what a translation from that latent can reach at least;
* per count modality, the real-vs-drawn classifier AUC (:func:`generation_score_set`) of two
  sets of reconstruction draws against the held-out cells: the held-out cells' own draws (how
  the encoder and decoder generalise) and the draws of as many training cells (what decoding
  the training cells' latents gives, the ceiling of a diffusion that reproduces them), with
  real training cells beside them (the real-vs-real floor), the spread of each set along the
  main axes of variation over the held-out cells' (``scdx_scvi.metrics.spread_ratio``; below
  1: blurred) and the median library size of each set over the held-out cells'.

Usage::

    python benchmarks/autoencoder_dropout.py --dataset eccite_citefuse --dropout-rate 0 0.1
    python benchmarks/autoencoder_dropout.py --dataset eccite_citefuse --dropout-rate 0 \
        --protein-likelihood nb nb_mixture --out benchmarks/results/protein_likelihood_eccite.json
    python benchmarks/autoencoder_dropout.py --dataset eccite_citefuse --dropout-rate 0 \
        --protein-likelihood nb_mixture --encoder-input counts log1p
    python benchmarks/autoencoder_dropout.py --dataset eccite_citefuse --dropout-rate 0 \
        --early-stopping on off --out benchmarks/results/stage1_options/spread_eccite_citefuse.json
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import scvi
import torch
from _common import Results, headline, measured, open_results, read, split

from scdx_scvi import SCDX
from scdx_scvi.metrics import (
    REFERENCE_NAME,
    generation_score_set,
    latent_floor,
    reference_sample,
)
from scdx_scvi.metrics._tasks import GENERATION_SEEDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="eccite_citefuse")
    parser.add_argument("--dropout-rate", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument(
        "--protein-likelihood", nargs="+", default=["nb_mixture"], choices=["nb", "nb_mixture"]
    )
    parser.add_argument(
        "--encoder-input", nargs="+", default=["counts"], choices=["counts", "log1p"]
    )
    parser.add_argument(
        "--reconstruction-weights", nargs="+", default=["sum"], choices=["sum", "per_feature"]
    )
    parser.add_argument(
        "--architecture", nargs="+", default=["small"], choices=["small", "default", "large"]
    )
    parser.add_argument("--early-stopping", nargs="+", default=["on"], choices=["on", "off"])
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="stage-1 epochs (default: by data size)"
    )
    parser.add_argument("--generation-seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mdata = read(args.dataset)
    train, test = split(mdata)
    results: Results = open_results(__file__, args, train, test)
    batch_key = "batch" if "batch" in mdata.obs else None
    seeds = GENERATION_SEEDS[: args.generation_seeds]
    options = itertools.product(
        args.dropout_rate, args.protein_likelihood, args.encoder_input,
        args.reconstruction_weights, args.architecture, args.early_stopping,
    )  # fmt: skip
    for rate, likelihood, encoder_input, weights, architecture, stopping in options:
        scvi.settings.seed = 0
        data = train.copy()
        SCDX.setup_mudata(data, batch_key=batch_key)
        model = SCDX(
            data, dropout_rate=rate, protein_likelihood=likelihood, encoder_input=encoder_input,
            reconstruction_weights=weights, architecture=architecture,
        )  # fmt: skip
        _, seconds, _ = measured(
            lambda m=model, stop=stopping == "on": m.train_autoencoder(
                max_epochs=args.max_epochs,
                early_stopping=stop,
                enable_progress_bar=False,
            )
        )
        names = model.modality_names
        observed = {m: test[names[m]].X for m in model.modalities}
        predicted = model.get_normalized_modalities(test, library_size=1e4)
        row = {
            "dropout_rate": rate,
            "protein_likelihood": likelihood,
            "encoder_input": encoder_input,
            "reconstruction_weights": weights,
            "architecture": architecture,
            "early_stopping": stopping == "on",
            "seconds": seconds,
            "autoencoder_epochs": model.epochs_trained["autoencoder"],
            "reconstruction": {m: headline(observed[m], predicted[m], m) for m in model.modalities},
            "floor": {},
            "draw_auc": {},
            "draw_spread": {},
            "draw_library_ratio": {},
        }
        latents = {
            m: (
                model.get_latent_representation(data, modality=m),
                model.get_latent_representation(test, modality=m),
            )
            for m in model.modalities
        }
        for source, (train_latent, test_latent) in latents.items():
            for target in model.modalities:
                if source != target:
                    floors = latent_floor(train_latent, data[names[target]].X, test_latent, target)
                    row["floor"][f"{source}->{target}"] = {
                        name: headline(observed[target], values, target)
                        for name, values in floors.items()
                    }
        own = model.posterior_predictive_sample(test, seed=0)
        chosen = np.random.default_rng(1).choice(data.n_obs, test.n_obs, replace=False)
        real = reference_sample(data.n_obs, test.n_obs)  # the real-vs-real floor
        training = model.posterior_predictive_sample(data, indices=chosen, seed=0)
        for m in model.modalities:
            if model.module.likelihoods[m].binary:
                continue
            sets = {
                "held-out draws": own[m],
                "training draws": training[m],
                REFERENCE_NAME: data[names[m]].X[real],
            }
            scores = generation_score_set(
                observed[m], sets, m, seeds=seeds, paired=("held-out draws",)
            )
            row["draw_auc"][m] = {name: s["classifier_auc"] for name, s in scores.items()}
            row["draw_spread"][m] = {name: s["spread_ratio"] for name, s in scores.items()}
            row["draw_library_ratio"][m] = {
                name: s["diagnostics"]["library_size_median_ratio"] for name, s in scores.items()
            }
        results.record(row)


if __name__ == "__main__":
    main()
