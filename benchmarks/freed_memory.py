"""Stage-1 time and peak memory under each policy for freed host memory, beside MultiVI.

On the training cells of the canonical split, ``SCDX(mdata)`` with the package defaults trains
its autoencoder ``--epochs`` epochs under each policy of ``train_autoencoder(freed_memory=...)``
(:func:`scdx_scvi.train.freed_memory_policy`: ``"release"``, the default, ``"retain"`` and
``None``, the allocator as it is), and MultiVI trains as many epochs with its defaults. The
allocator's state is process-wide and outlives a training run, so every run is a fresh process;
the runs go round ``--repeats`` times, so that a drift of the machine touches every policy
alike. Each row gives the seconds and the peak of the resident set above its start (the
kernel's high-water mark, reset after the data are read; the model is built inside the
measurement).

Usage::

    python benchmarks/freed_memory.py --dataset snareseq_mop
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

from _common import RESULTS, Results, provenance

RUNS = ("release", "retain", "none", "MultiVI")


def child(dataset: str, run: str, epochs: int) -> dict:
    """Train once in this process; the row of the run."""
    import scvi
    import torch
    from _common import measured, read, split

    from scdx_scvi import SCDX

    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    train, _ = split(read(dataset))
    if run == "MultiVI":
        modalities = {"rna_layer": "rna", "atac_layer": "atac"}
        scvi.model.MULTIVI.setup_mudata(train, modalities=modalities)

        def fit():
            model = scvi.model.MULTIVI(
                train, n_genes=train["rna"].n_vars, n_regions=train["atac"].n_vars
            )
            model.train(max_epochs=epochs, enable_progress_bar=False)
    else:
        SCDX.setup_mudata(train, labels_key="cell_type")
        policy = None if run == "none" else run

        def fit():
            SCDX(train).train_autoencoder(
                max_epochs=epochs, freed_memory=policy, enable_progress_bar=False
            )

    _, seconds, peak = measured(fit)
    return {"run": run, "epochs": epochs, "seconds": seconds, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_mop")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.dataset, args.child, args.epochs)))
        return
    results = Results(
        Path(args.out) if args.out else RESULTS / f"freed_memory_{args.dataset}.json",
        {"settings": vars(args), **provenance("freed_memory.py")},
    )
    for repeat in range(args.repeats):
        for run in RUNS:
            command = [sys.executable, __file__, "--dataset", args.dataset,
                       "--epochs", str(args.epochs), "--child", run]  # fmt: skip
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results.record({**json.loads(out.strip().splitlines()[-1]), "repeat": repeat})
    print(f"wrote {results.path}")


if __name__ == "__main__":
    main()
