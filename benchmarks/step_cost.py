"""Where one stage-1 training step spends its time as the number of ATAC peaks grows.

On synthetic sparse RNA+ATAC (the simulator of ``scaling.py``), ``SCDX(mdata)`` with the package
defaults takes one minibatch of ``--batch-size`` cells. Timed, each as the median of
``--repeats`` runs in one process (the forward/backward passes after three warm-up runs, the
rest after one):

* ``forward_backward``: the module's forward pass, loss and backward pass, with the allocator
  as it is and (``forward_backward_retained``) with freed memory kept for reuse, as
  ``train_autoencoder(freed_memory="retain")`` trains
  (:func:`scdx_scvi.train.retained_freed_memory`);
* ``optimizer_<name>``: one AdamW update of every parameter, for the element-wise loop
  (``foreach=False``), the multi-tensor (``foreach=True``) and the fused implementation (what
  ``scdx_scvi.train.adamw`` picks on a CPU or a GPU);
* ``first_layer_<name>``: forward and backward of the first ATAC encoder layer alone, as the
  dense product the model uses and as a sparse product over the open peaks
  (``torch.nn.functional.embedding_bag``, weights stored peaks x width), the alternative for
  binary input.

Usage::

    python benchmarks/step_cost.py    # 25k, 100k and 200k peaks
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scvi
import torch
from _common import RESULTS, Results, provenance
from scaling import LABELS_KEY, cell_types, paired_mudata, simulate_atac, simulate_rna
from scvi.dataloaders import AnnDataLoader

from scdx_scvi import SCDX
from scdx_scvi._constants import MODALITIES
from scdx_scvi.module import PRESETS
from scdx_scvi.train import retained_freed_memory

#: Warm-up steps before a forward/backward pass is timed: with freed memory retained, the heap
#: grows over the first few steps until a step's blocks fit in what earlier steps freed.
WARMUP = 3
OPTIMIZERS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_layer_costs(x: torch.Tensor, width: int, repeats: int) -> dict[str, float]:
    """Forward + backward of a ``peaks -> width`` layer on binary ``x``, dense and sparse."""
    weight = torch.randn(width, x.shape[1], requires_grad=True)  # nn.Linear layout
    table = torch.randn(x.shape[1], width, requires_grad=True)  # embedding layout
    rows, cols = x.nonzero(as_tuple=True)
    offsets = torch.searchsorted(rows, torch.arange(x.shape[0]))

    def dense() -> None:
        torch.nn.functional.linear(x, weight).sum().backward()
        weight.grad = None

    def sparse() -> None:
        torch.nn.functional.embedding_bag(cols, table, offsets, mode="sum").sum().backward()
        table.grad = None

    return {
        "first_layer_dense": median_seconds(dense, repeats),
        "first_layer_sparse": median_seconds(sparse, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-peaks", type=int, nargs="+", default=[25_000, 100_000, 200_000])
    parser.add_argument("--n-cells", type=int, default=512, help="simulated cells")
    parser.add_argument("--n-genes", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    scvi.settings.seed = 0
    results = Results(
        Path(args.out) if args.out else RESULTS / "step_cost.json",
        {"settings": vars(args), **provenance("step_cost.py")},
    )
    rng = np.random.default_rng(0)
    types = cell_types(args.n_cells, 5, rng)
    rna = simulate_rna(types, args.n_genes, rng)
    for n_peaks in args.n_peaks:
        mdata = paired_mudata(rna.copy(), simulate_atac(types, n_peaks, rng), types)
        SCDX.setup_mudata(
            mdata, labels_key=LABELS_KEY, modalities={"rna_layer": "rna", "atac_layer": "atac"}
        )
        model = SCDX(mdata)
        module = model.module.train()
        loader = AnnDataLoader(model.adata_manager, batch_size=args.batch_size, shuffle=True)
        batch = next(iter(loader))

        def forward_backward(module=module, batch=batch) -> None:
            module.zero_grad(set_to_none=False)
            module(batch)[2].loss.backward()

        row = {
            "n_peaks": n_peaks,
            "batch_size": args.batch_size,
            "architecture": model.options["architecture"],
            "n_parameters": sum(p.numel() for p in module.parameters()),
            "forward_backward": median_seconds(forward_backward, args.repeats, WARMUP),
        }
        with retained_freed_memory() as applied:
            if applied:
                row["forward_backward_retained"] = median_seconds(
                    forward_backward, args.repeats, WARMUP
                )
        params = [p for p in module.parameters() if p.grad is not None]
        for name, kwargs in OPTIMIZERS.items():
            optimizer = torch.optim.AdamW(params, lr=1e-6, **kwargs)
            row[f"optimizer_{name}"] = median_seconds(optimizer.step, args.repeats)
        x = model.module.likelihoods["atac"].observed(batch[MODALITIES["atac"].registry_key])
        width = PRESETS[model.options["architecture"]].n_hidden["atac"][0]
        row.update(first_layer_costs(x, width, args.repeats))
        results.record(row)
        del model, module, loader, batch, mdata


if __name__ == "__main__":
    main()
