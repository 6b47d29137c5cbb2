"""Option study of translation: which model options make SCDX follow its source.

For each configuration (named below), SCDX is trained from scratch on the training cells of the
canonical split and the held-out cells' source modality is translated with the default
``sampler="mean"``. Beside it, the *floor* of the model's own latents: kNN regression
(``k = 15``) and ridge regression from the source latent of the trained autoencoder to the
target (on the scale of the metrics: log1p counts per 10k, or binary accessibility), fitted on
the training cells. A translation that stays below this floor does not use what its own source
latent carries. The controls on the raw source (kNN, ridge, mean profile) come from
:func:`scdx_scvi.metrics.translation_controls`, the scores from
:func:`scdx_scvi.metrics.translation_scores`.

Usage::

    python benchmarks/translation_options.py --dataset neurips2021_bmmc_cite_starter
    python benchmarks/translation_options.py --dataset snareseq_mop --configs scdx \\
        --ae-epochs 15 --diffusion-steps 3000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scvi
import torch
from _common import RESULTS, Results, provenance, read
from scipy import sparse
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor

from scdx_scvi import SCDX
from scdx_scvi.metrics import (
    held_out_mask,
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
}


def kinds(mdata) -> dict[str, str]:
    """Modality kind of each ``mdata.mod`` name of the shared data sets."""
    return {name: ("protein" if name in ("protein", "prot", "adt") else name) for name in mdata.mod}


def metric_scale(x, target: str) -> np.ndarray:
    """Training targets on the scale the floors regress: log1p CP10k, or binary accessibility."""
    x = sparse.csr_matrix(x, dtype=np.float64)
    if target == "atac":
        return (x > 0).astype(np.float64).toarray()
    totals = np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1e-12)
    return np.log1p((sparse.diags(1e4 / totals) @ x).toarray())


def floors(z_train, y_train, z_query, target: str) -> dict[str, np.ndarray]:
    """kNN and ridge from the model's source latent, back on the prediction scale."""
    out = {
        "kNN on the SCDX source latent": KNeighborsRegressor(15).fit(z_train, y_train),
        "ridge on the SCDX source latent": Ridge(alpha=10.0).fit(z_train, y_train),
    }
    preds = {name: model.predict(z_query) for name, model in out.items()}
    if target == "atac":
        return {name: np.clip(p, 0.0, 1.0) for name, p in preds.items()}
    return {name: np.expm1(np.clip(p, 0.0, None)) for name, p in preds.items()}


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
        scvi.settings.seed = args.seed
        SCDX.setup_mudata(train, **setup)
        model = SCDX(train, **CONFIGS[config])
        start = time.perf_counter()
        model.train(
            max_epochs=args.ae_epochs, max_steps_diffusion=args.diffusion_steps,
            enable_progress_bar=False, accelerator="cpu",
        )  # fmt: skip
        seconds = time.perf_counter() - start
        for source, target in directions:
            truth = query[name_of[target]].X
            source_query = query[name_of[source]]
            start = time.perf_counter()
            translated = model.get_translated_modality(source_query, source, target, seed=0)
            rows = {config: translated.X}
            z_train = model.get_latent_representation(train, modality=source)
            z_query = model.get_latent_representation(query, modality=source)
            y_train = metric_scale(train[name_of[target]].X, target)
            rows |= floors(z_train, y_train, z_query, target)
            for name, pred in rows.items():
                scores, _ = translation_scores(truth, pred, target)
                row = {"config": config, "direction": f"{source}->{target}", **scores}
                if name != config:
                    row["floor"] = name
                else:
                    row |= {
                        "train_seconds": seconds,
                        "translate_seconds": time.perf_counter() - start,
                        "epochs_trained": model.epochs_trained,
                    }
                results.record(row)


if __name__ == "__main__":
    main()
