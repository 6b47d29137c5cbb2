"""Sampler, step count and guidance scale against the realism and the cost of generated cells.

The SCDX model of record of a data set (``run.py --save-dir``; trained on the training cells of
the canonical split) generates as many cells of each label as the held-out set has, once per
``--settings`` entry ``sampler:steps:guidance``. Each set is scored per modality against the
held-out cells with ``generation_score_set`` (real-vs-generated random-forest AUC, MMD, kNN
label recovery, count-profile diagnostics), beside the real-vs-real floor, and timed (cells per
second, denoiser evaluations per cell). Without labels the guidance scale has no effect and is
recorded as given. ``--retrain-diffusion`` first trains a new diffusion, with the package's
current defaults, on the saved model's autoencoder (the denoiser and the depth models change;
the autoencoder and the split do not); ``--generation-depths`` scores every setting with each
given ``generation_depth``, on the same denoiser. ``--n-channels`` and ``--diffusion-steps``
change the retrained denoiser's width and training steps; ``--translate`` also scores the
translation of the held-out cells (the default conditional mean, both directions) by the
scored model, so that a denoiser that generates better is seen not to translate worse.

Usage::

    python benchmarks/sampling.py --dataset eccite_citefuse
    python benchmarks/sampling.py --dataset eccite_citefuse --settings dpm++2m:10:1 ddim:50:1
    python benchmarks/sampling.py --dataset snareseq_mop --settings dpm++2m:10:1 --retrain-diffusion
    python benchmarks/sampling.py --dataset snareseq_mop --settings dpm++2m:10:1 \
        --retrain-diffusion --n-channels 128 --translate
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch
from _common import (
    Results,
    generation_request,
    labels_of,
    measured,
    open_results,
    read,
    retrain_diffusion,
    split,
)

from scdx_scvi import SCDX
from scdx_scvi.metrics import (
    REFERENCE_NAME,
    generation_score_set,
    reference_sample,
    translation_directions,
    translation_scores,
)
from scdx_scvi.metrics._tasks import GENERATION_SEEDS

MODELS = Path(__file__).resolve().parent / "models" / "bench"
#: The benchmark of record's setting first, then fewer and more steps, other samplers, guidance.
SETTINGS = (
    "dpm++2m:25:1", "dpm++2m:10:1", "dpm++2m:50:1", "ddim:25:1", "ddpm:100:1",
    "dpm++2m:25:2",
)  # fmt: skip


def parse_setting(text: str) -> tuple[str, int, float]:
    """``"dpm++2m:25:1"`` -> ``("dpm++2m", 25, 1.0)``."""
    try:
        sampler, steps, guidance = text.split(":")
        return sampler, int(steps), float(guidance)
    except ValueError as error:
        raise SystemExit(f"--settings entries are sampler:steps:guidance, got {text!r}") from error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="eccite_citefuse")
    parser.add_argument("--labels-key", default="cell_type", help="'' for none")
    parser.add_argument(
        "--load-dir", default=None, help="run.py --save-dir of the model (default: models/bench)"
    )
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument("--generation-seeds", type=int, default=len(GENERATION_SEEDS))
    parser.add_argument("--retrain-diffusion", action="store_true")
    parser.add_argument(
        "--generation-depths", nargs="+", default=None,
        help="generation_depth values to score each setting with (default: the model's)",
    )  # fmt: skip
    parser.add_argument("--n-channels", type=int, default=None, help="retrained denoiser's width")
    parser.add_argument(
        "--diffusion-steps", type=int, default=None, help="retrained denoiser's steps"
    )
    parser.add_argument("--translate", action="store_true", help="also score translation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    settings = [parse_setting(text) for text in args.settings]
    torch.set_num_threads(args.threads)
    train, test = split(read(args.dataset))
    results: Results = open_results(__file__, args, train, test)
    models = Path(args.load_dir) if args.load_dir else MODELS
    model = SCDX.load(models / f"{args.dataset}_scdx", adata=train.copy())
    steps = model.epochs_trained["diffusion_steps"]
    diffusion = {"retrained": args.retrain_diffusion, "steps": steps}
    if args.retrain_diffusion:
        model, diffusion["seconds"], _ = retrain_diffusion(
            model, args.n_channels, max_steps=args.diffusion_steps
        )
        diffusion["steps"] = model.epochs_trained["diffusion_steps"]
    elif args.n_channels is not None or args.diffusion_steps is not None:
        raise SystemExit("--n-channels and --diffusion-steps need --retrain-diffusion")
    diffusion["n_channels"] = model.options["n_channels"]
    if args.translate:
        names = model.modality_names
        for source, target in translation_directions(names):
            translated = model.get_translated_modality(test[names[source]], source, target, seed=0)
            scores, _ = translation_scores(test[names[target]].X, translated.X, target)
            results.record({"translation": f"{source}->{target}", "diffusion": diffusion, **scores})
    labels_key = args.labels_key if args.labels_key in train.obs else None
    train_labels, test_labels = labels_of(train, labels_key), labels_of(test, labels_key)
    request, reference = generation_request(train, test, labels_key)  # as run.py
    rows = reference_sample(train.n_obs, reference, train_labels, seed=0)
    depths = args.generation_depths or [model.module.generation_depth]
    for (sampler, n_steps, guidance), depth in itertools.product(settings, depths):
        model.module.generation_depth = depth
        generated, seconds, peak = measured(
            lambda s=sampler, n=n_steps, w=guidance: model.generate(
                **request, sampler=s, n_steps=n, guidance_scale=w, seed=0
            )
        )
        labels = {"generated": labels_of(generated, labels_key)}
        if labels_key:
            labels[REFERENCE_NAME] = train_labels[rows]
        row = {
            "sampler": sampler,
            "n_steps": n_steps,
            "guidance_scale": guidance,
            "generation_depth": depth,
            # guidance evaluates the conditional and the unconditional model at every step
            "denoiser_evaluations": n_steps * (1 if guidance == 1 else 2),
            "seconds": seconds,
            "cells_per_second": generated.n_obs / seconds,
            "peak_mib": peak,
            "diffusion": diffusion,
        }
        for m, name in model.modality_names.items():
            sets = {"generated": generated[name].X, REFERENCE_NAME: train[name].X[rows]}
            scores = generation_score_set(
                test[name].X, sets, m, test_labels, labels if labels_key else None,
                n_comps=args.n_comps, seeds=GENERATION_SEEDS[: args.generation_seeds],
            )  # fmt: skip
            row[m] = {
                key: scores["generated"].get(key)
                for key in ("classifier_auc", "mmd_rbf", "label_accuracy", "diagnostics")
            }
            row[m]["real_vs_real_auc"] = scores[REFERENCE_NAME]["classifier_auc"]
        results.record(row)


if __name__ == "__main__":
    main()
