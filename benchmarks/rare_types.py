"""Cell-type fidelity of generated cells per type, rare types included, against guidance.

The SCDX model of a data set (``run.py --save-dir``, or trained here as ``run.py`` trains it)
generates the same number of cells of every training label, once per guidance scale w and
generation seed. Each modality is embedded in the ``Embedding`` (PCA of log1p CP10k; LSI for
ATAC) fitted on the real training cells, and a kNN classifier trained on them
(``knn_label_transfer_accuracy``, k = 15) names the type of each generated cell: the share of a
type's generated cells given their own label is its **recall**. The held-out real cells of each
type, classified the same way, are the control: what a real cell of that type scores (over few
cells for the rarest types). The classifier is trained on cells the generator was trained on,
so this scores whether a generated cell of a type looks like that type, not realism against
unseen cells (``run.py`` scores that).

Usage::

    python benchmarks/rare_types.py --dataset snareseq_mop --load-dir <models folder>
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scvi
from _common import Results, labels_of, open_results, read, split
from run import parse_args as run_args
from run import train_scdx

from scdx_scvi import SCDX
from scdx_scvi.metrics import Embedding, knn_label_transfer_accuracy


def recall_per_type(reference, reference_labels, query, query_labels) -> dict[str, float]:
    """Share of each type's ``query`` cells the classifier of ``reference`` gives their type."""
    out = {}
    for label in np.unique(query_labels):
        rows = query_labels == label
        out[str(label)] = knn_label_transfer_accuracy(
            reference, reference_labels, query[rows], query_labels[rows]
        )["accuracy"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_mop")
    parser.add_argument("--load-dir", default=None, help="run.py --save-dir of the model")
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 2.0, 4.0])
    parser.add_argument("--per-type", type=int, default=100, help="generated cells per type")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--n-comps", type=int, default=50)
    parser.add_argument("--out", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (run.py --quick)")
    args = parser.parse_args()
    if args.quick:
        args.scales, args.per_type, args.seeds, args.n_comps = [1.0, 2.0], 10, [0], 10
    scvi.settings.seed = 0
    mdata = read(args.dataset)
    train, test = split(mdata)
    results: Results = open_results(__file__, args, train, test)
    defaults = run_args(["--dataset", args.dataset] + ["--quick"] * args.quick)
    labels_key = defaults.labels_key
    if labels_key not in mdata.obs:
        raise SystemExit(f"{args.dataset} has no {labels_key!r} labels: nothing to score per type.")
    if args.load_dir:
        model = SCDX.load(Path(args.load_dir) / f"{args.dataset}_scdx", adata=train.copy())
    else:
        model, _ = train_scdx(train, defaults, labels_key)
    train_labels, test_labels = labels_of(train, labels_key), labels_of(test, labels_key)
    types, n_train = np.unique(train_labels, return_counts=True)
    n_test = {str(t): int((test_labels == t).sum()) for t in types}
    known = np.isin(test_labels, types)  # held-out cells of the types the model can generate
    embeddings, held_out = {}, {}
    for m, name in model.modality_names.items():
        embedding = Embedding(m, args.n_comps).fit(train[name].X)
        embeddings[m] = (embedding, embedding.transform(train[name].X))
        held_out[m] = recall_per_type(
            embeddings[m][1], train_labels, embedding.transform(test[name].X[known]),
            test_labels[known],
        )  # fmt: skip
    results.record(
        {
            "set": "held-out cells",
            "n_train": {str(t): int(n) for t, n in zip(types, n_train, strict=True)},
            "n_test": n_test,
            "recall": held_out,
        }
    )
    for scale in args.scales:
        for seed in args.seeds:
            generated = model.generate(
                labels={str(t): args.per_type for t in types}, guidance_scale=scale,
                sampler="dpm++2m", n_steps=defaults.generation_steps, seed=seed,
            )  # fmt: skip
            labels = labels_of(generated, labels_key)
            recall = {}
            for m, name in model.modality_names.items():
                embedding, reference = embeddings[m]
                recall[m] = recall_per_type(
                    reference, train_labels, embedding.transform(generated[name].X), labels
                )
            results.record({"set": "generated", "guidance_scale": scale, "seed": seed,
                            "recall": recall})  # fmt: skip


if __name__ == "__main__":
    main()
