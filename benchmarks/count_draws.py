"""How generated counts are drawn from the decoder against the realism of generated cells.

The SCDX model of a data set (``run.py --save-dir``, or trained here as ``run.py`` trains it)
generates as many cells of each label as the held-out set has, once per generation seed; the
same latents are drawn into counts (RNA, protein) in several ways, and each set is scored
against the held-out cells with ``generation_score_set`` beside the real-vs-real floor and the
training cells' own reconstruction draws (``posterior_predictive_sample`` of the floor's
training cells: what the decoder and its likelihood give for cells the model has seen):

* ``likelihood``: the package's draw, each count from its negative binomial (or mixture), whose
  expected total is the cell's drawn library size (drawn as the model's ``generation_depth``
  says);
* ``given_library``: the same gamma rates rescaled to sum to the drawn library, then Poisson, so
  that each cell's total is its library size up to Poisson noise;
* ``poisson``: Poisson at the decoded means (no overdispersion);
* ``dispersion_x0.5`` / ``dispersion_x2``: the fitted inverse dispersions halved / doubled;
* ``lognormal_libraries`` / ``training_cells``: the package's draw with the library sizes
  drawn from the per-label log-normal (``generation_depth="latent_atac"``) / taken from one
  training cell of the label (``"training_cells"``), whatever the model's ``generation_depth``.

Each set also records its spread along the main axes of variation over the held-out cells'
(``spread_ratio``; below 1: blurred). Accessibility is drawn as the package draws it in every
variant. With two count modalities (CITE-seq) each set also records the Spearman correlation
of the cells' log library sizes in the two (``library_correlation``), of the held-out and the
floor's training cells in the first row.

Usage::

    python benchmarks/count_draws.py --dataset eccite_citefuse --load-dir <models folder>
    python benchmarks/count_draws.py --dataset eccite_citefuse --variants likelihood \
        --out benchmarks/results/stage1_options/spread_generated_eccite_citefuse.json
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scvi
import torch
from _common import Results, generation_request, labels_of, open_results, read, split
from run import parse_args as run_args
from run import train_scdx
from scipy.stats import spearmanr

from scdx_scvi import SCDX
from scdx_scvi.metrics import REFERENCE_NAME, generation_score_set, reference_sample
from scdx_scvi.metrics._tasks import GENERATION_SEEDS

VARIANTS = (
    "likelihood",
    "given_library",
    "poisson",
    "dispersion_x0.5",
    "dispersion_x2",
    "lognormal_libraries",
    "training_cells",
)
RECONSTRUCTION = "training cells' reconstruction draws"


def gamma_parameters(px) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and inverse dispersion of each count (a mixture draws its component first)."""
    if hasattr(px, "mixture_probs"):
        background = torch.bernoulli(px.mixture_probs.expand_as(px.mu1)).bool()
        mu = torch.where(background, px.mu1, px.mu2)
        return mu, px.theta1.expand_as(mu)
    return px.mu, px.theta.expand_as(px.mu)


def draw(px, library: torch.Tensor, variant: str) -> torch.Tensor:
    """Draw counts from the decoded ``px`` at ``library`` in the way ``variant`` says."""
    mu, theta = gamma_parameters(px)
    if variant == "poisson":
        return torch.poisson(mu)
    if variant.startswith("dispersion_x"):
        theta = theta * float(variant.removeprefix("dispersion_x"))
    rate = torch.distributions.Gamma(theta, theta / mu.clamp(min=1e-8)).sample()
    if variant == "given_library":
        rate = rate * (library / rate.sum(-1, keepdim=True).clamp(min=1e-8))
    return torch.poisson(rate.clamp(max=1e8))


@contextlib.contextmanager
def drawn_as(model: SCDX, variant: str) -> Iterator[None]:
    """Within the block, the model's count likelihoods draw in the way ``variant`` says."""
    depths = {"lognormal_libraries": "latent_atac", "training_cells": "training_cells"}
    if variant == "likelihood" or variant in depths:
        module, depth = model.module, model.module.generation_depth
        module.generation_depth = depths.get(variant, depth)
        try:
            yield
        finally:
            module.generation_depth = depth
        return
    counts = [lik for lik in model.module.likelihoods.values() if not lik.binary]
    originals = [lik.distribution for lik in counts]

    def wrapped(original):
        def distribution(logits, library=None):
            px = original(logits, library)
            px.sample = lambda *_: draw(px, library, variant)
            return px

        return distribution

    for lik, original in zip(counts, originals, strict=True):
        lik.distribution = wrapped(original)
    try:
        yield
    finally:
        for lik in counts:
            del lik.distribution  # the class's method again


def library_correlation(counts: list) -> float | None:
    """Spearman correlation of the cells' library sizes in the first two of ``counts``."""
    if len(counts) < 2:
        return None
    first, second = (np.asarray(x.sum(axis=1)).ravel() for x in counts[:2])
    return float(spearmanr(first, second)[0])


def keep_training_libraries(model: SCDX, train) -> None:
    """Keep the training cells' library sizes in a model saved before ``train_diffusion`` did."""
    if model.module.training_depths.fitted():
        return
    rows = np.asarray(model.train_indices)
    codes = np.asarray(model.adata_manager.get_from_registry("labels")).reshape(-1)[rows]
    names = model.modality_names
    model.module.training_depths.fit(
        model.module.label_codes(torch.as_tensor(codes)),
        {m: torch.as_tensor(np.asarray(train[names[m]].X[rows].sum(axis=1)).ravel())
         for m in model.module.training_depths.modalities},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="eccite_citefuse")
    parser.add_argument("--load-dir", default=None, help="run.py --save-dir of the model")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument("--out", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (run.py --quick)")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n_comps = args.seeds[:1], 10
    scvi.settings.seed = 0
    mdata = read(args.dataset)
    train, test = split(mdata)
    results: Results = open_results(__file__, args, train, test)
    defaults = run_args(["--dataset", args.dataset] + ["--quick"] * args.quick)
    labels_key = defaults.labels_key if defaults.labels_key in mdata.obs else None
    if args.load_dir:
        model = SCDX.load(Path(args.load_dir) / f"{args.dataset}_scdx", adata=train.copy())
        keep_training_libraries(model, train)
    else:
        model, _ = train_scdx(train, defaults, labels_key)
    train_labels, test_labels = labels_of(train, labels_key), labels_of(test, labels_key)
    request, reference = generation_request(train, test, labels_key)  # as run.py
    rows = reference_sample(train.n_obs, reference, train_labels, seed=0)
    seen = np.unique(rows)  # the floor's cells, each once (the floor may repeat a cell)
    reconstruction = model.posterior_predictive_sample(train[seen].copy(), seed=0)
    scored = {m: name for m, name in model.modality_names.items()
              if not model.module.likelihoods[m].binary}  # fmt: skip
    floors = {}
    for m, name in scored.items():  # the real-vs-real floor and the reconstruction draws
        sets = {REFERENCE_NAME: train[name].X[rows], RECONSTRUCTION: reconstruction[m]}
        labels = (
            {REFERENCE_NAME: train_labels[rows], RECONSTRUCTION: train_labels[seen]}
            if labels_key
            else None
        )
        scores = generation_score_set(
            test[name].X, sets, m, test_labels, labels, n_comps=args.n_comps,
            seeds=GENERATION_SEEDS[: defaults.generation_seeds],
        )  # fmt: skip
        floors[m] = {
            "real_vs_real_auc": scores[REFERENCE_NAME]["classifier_auc"],
            "reconstruction_draws_auc": scores[RECONSTRUCTION]["classifier_auc"],
            "real_vs_real_spread": scores[REFERENCE_NAME]["spread_ratio"],
            "reconstruction_draws_spread": scores[RECONSTRUCTION]["spread_ratio"],
            "reconstruction_draws_diagnostics": scores[RECONSTRUCTION].get("diagnostics"),
        }
    correlations = {
        "library_correlation": library_correlation([test[n].X for n in scored.values()]),
        "library_correlation_training": library_correlation(
            [train[n].X[rows] for n in scored.values()]
        ),
    }
    results.record({"variant": None, **floors, **correlations})
    for seed in args.seeds:
        for variant in args.variants:
            with drawn_as(model, variant):
                generated = model.generate(
                    **request, sampler="dpm++2m", n_steps=defaults.generation_steps, seed=seed
                )
            labels = {"generated": labels_of(generated, labels_key)} if labels_key else None
            row = {"variant": variant, "seed": seed}
            row["library_correlation"] = library_correlation(
                [generated[n].X for n in scored.values()]
            )
            for m, name in scored.items():
                scores = generation_score_set(
                    test[name].X, {"generated": generated[name].X}, m, test_labels, labels,
                    n_comps=args.n_comps, seeds=GENERATION_SEEDS[: defaults.generation_seeds],
                )  # fmt: skip
                row[m] = {
                    key: scores["generated"].get(key)
                    for key in ("classifier_auc", "mmd_rbf", "spread_ratio", "diagnostics")
                }
            results.record(row)


if __name__ == "__main__":
    main()
