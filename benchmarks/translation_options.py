"""Option study of translation: which model options make SCDX follow its source.

For each configuration (named below), SCDX is trained from scratch on the training cells of the
canonical split and the held-out cells' source modality is translated with the default
``sampler="mean"``. Beside it, the *floor* of the model's own latents
(:func:`scdx_scvi.metrics.latent_floor`): kNN regression (``k = 15``) and ridge regression from
the source latent of the trained autoencoder to the target, fitted on the training cells. A
translation that stays below this floor does not use what its own source latent carries. The
controls on the raw source (kNN, ridge, mean profile) come from
:func:`scdx_scvi.metrics.translation_controls`, the scores from
:func:`scdx_scvi.metrics.translation_scores`.

Usage::

    python benchmarks/translation_options.py --dataset neurips2021_bmmc_cite_starter
    python benchmarks/translation_options.py --dataset snareseq_mop --configs scdx \\
        --ae-epochs 15 --diffusion-steps 3000
    python benchmarks/translation_options.py --dataset snareseq_mop --configs "scdx,narrow ATAC"
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import scvi
import torch
from _common import RESULTS, Results, kinds, measured, provenance, read

from scdx_scvi import SCDX
from scdx_scvi.metrics import (
    held_out_mask,
    latent_floor,
    translation_controls,
    translation_directions,
    translation_scores,
)

#: The configurations compared: options of ``SCDX(...)`` on top of the default ``"scdx"`` one.
CONFIGS = {
    "scdx": {},
    "no cross-reconstruction": {"cross_reconstruction": 0.0},
    "no source injection": {"source_injection": False},
    "neither (previous defaults)": {"cross_reconstruction": 0.0, "source_injection": False},
    "latent agreement": {"latent_agreement": 1.0},
    # half the weights per peak: less memory and time, for a lower RNA -> ATAC AUROC
    "narrow ATAC": {"n_hidden": {"atac": (256, 256)}},
    # dropout in the denoiser's residual blocks (DDPM's regulariser on small data)
    "denoiser dropout": {"denoiser_kwargs": {"dropout": 0.1}},
    # each modality's autoencoder stops when its own validation loss does ("train": train())
    "per-modality early stopping": {
        "train": {"autoencoder_kwargs": {"early_stopping": "per_modality"}}
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="neurips2021_bmmc_cite_starter")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    parser.add_argument("--ae-epochs", type=int, default=None, help="default: the model's")
    parser.add_argument("--diffusion-steps", type=int, default=None, help="default: the model's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    mdata = read(args.dataset)
    test = held_out_mask(mdata.n_obs)
    train, query = mdata[~test].copy(), mdata[test].copy()
    kind = kinds(mdata)
    setup = {
        "modalities": {f"{kind[name]}_layer": name for name in mdata.mod},
        "labels_key": "cell_type" if "cell_type" in mdata.obs else None,
    }
    out = Path(args.out) if args.out else RESULTS / f"translation_options_{args.dataset}.json"
    results = Results(
        out,
        {
            "dataset": args.dataset,
            "n_train": int(train.n_obs),
            "n_test": int(query.n_obs),
            **provenance("translation_options.py"),
        },
    )
    directions = translation_directions(kind.values())
    name_of = {k: name for name, k in kind.items()}
    for direction in directions:
        source, target = direction
        controls = translation_controls(
            train[name_of[source]].X, train[name_of[target]].X, query[name_of[source]].X,
            source, target,
        )  # fmt: skip
        for name, pred in controls.items():
            scores, _ = translation_scores(query[name_of[target]].X, pred, target)
            results.record({"config": name, "direction": f"{source}->{target}", **scores})
    for config in args.configs.split(","):
        if not set(CONFIGS[config].get("n_hidden", {})) <= set(kind.values()):
            print(f"skipped {config!r}: {args.dataset} lacks a modality it sizes")
            continue
        scvi.settings.seed = args.seed
        SCDX.setup_mudata(train, **setup)
        options = dict(CONFIGS[config])
        train_options = options.pop("train", {})
        model = SCDX(train, **options)
        _, seconds, peak = measured(
            lambda m=model, kw=train_options: m.train(
                max_epochs=args.ae_epochs,
                max_steps_diffusion=args.diffusion_steps,
                enable_progress_bar=False,
                accelerator="cpu",
                **kw,
            )
        )
        history = model.history
        best_epochs = {
            m: int(history[key].iloc[:, 0].astype(float).idxmin())
            for m in model.module.modalities
            if (key := f"reconstruction_loss_{m}_validation") in history
        }
        for source, target in directions:
            truth = query[name_of[target]].X
            source_query = query[name_of[source]]
            start = time.perf_counter()
            translated = model.get_translated_modality(source_query, source, target, seed=0)
            rows = {config: translated.X}
            rows |= latent_floor(
                model.get_latent_representation(train, modality=source),
                train[name_of[target]].X,
                model.get_latent_representation(query, modality=source),
                target,
            )
            for name, pred in rows.items():
                scores, _ = translation_scores(truth, pred, target)
                row = {"config": config, "direction": f"{source}->{target}", **scores}
                if name != config:
                    row["floor"] = name
                else:
                    row |= {
                        "train_seconds": seconds,
                        "train_peak_mib": peak,
                        "n_parameters": sum(p.numel() for p in model.module.parameters()),
                        "translate_seconds": time.perf_counter() - start,
                        "epochs_trained": model.epochs_trained,
                        "best_validation_epoch": best_epochs,
                    }
                results.record(row)


if __name__ == "__main__":
    main()
