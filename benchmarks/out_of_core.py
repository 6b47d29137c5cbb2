"""Training and translating from a backed .h5mu much larger than the model: time and memory.

A paired RNA+ATAC file of ``--n-cells`` cells is written to disk chunk by chunk, so it is never
whole in memory: cells are drawn with replacement from a pool of ``--pool`` cells simulated as
in ``scaling.py`` (gamma-Poisson RNA, binary ATAC from cell-type peak profiles), and each
chunk's CSR rows are appended to the file's ``X``. The file is then read with
``mudata.read_h5mu(path, backed="r")`` and, measured phase by phase, registered
(``setup_mudata`` checks the values block by block), the autoencoder trained for
``--autoencoder-steps`` minibatches, the diffusion for ``--diffusion-steps`` steps (which first
encodes every cell once, reading the whole file), and ``--n-translate`` cells translated from
ATAC to RNA (the conditional mean). Each phase gives one row with the seconds, the peak memory above
its start, the resident set after it and the phase's high-water mark of the process's resident set
(``high_water_mib``, absolute; the largest over the phases is the run's); the header gives the file
size and the memory the counts would take if read into memory (CSR buffers of both modalities). The
model is ``SCDX(mdata)`` with the package defaults.
``--in-memory`` reads the same file into memory instead: the control for the cost of reading
minibatches from disk.

Usage::

    python benchmarks/out_of_core.py                    # 1M cells, 1,000 genes, 10,000 peaks
    python benchmarks/out_of_core.py --n-cells 200000 --out <file>
    python benchmarks/out_of_core.py --n-cells 200000 --in-memory --out <file>   # the control
    python benchmarks/out_of_core.py --quick            # a small smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import anndata as ad
import h5py
import mudata as md
import numpy as np
import pandas as pd
import scvi
from _common import RESULTS, Results, measured, peak_memory_method, provenance, rss_mib
from anndata.io import sparse_dataset, write_elem
from scaling import LABELS_KEY, MIB, cell_types, simulate_atac, simulate_rna

from scdx_scvi import SCDX

MODALITIES = {"rna_layer": "rna", "atac_layer": "atac"}


def write_backed_file(path: Path, args, rng: np.random.Generator) -> dict:
    """Write the paired file chunk by chunk; return its sizes.

    The MuData is first written without counts (``obs``, ``var`` and the cell-type labels of all
    cells); each modality's ``X`` is then written from its first chunk and appended to.
    """
    types = cell_types(args.pool, args.n_types, rng)
    pool = {
        "rna": simulate_rna(types, args.n_genes, rng),
        "atac": simulate_atac(types, args.n_peaks, rng, density=(0.01, 0.02)),
    }
    draw = rng.integers(args.pool, size=args.n_cells)
    obs = pd.DataFrame(index=pd.Index([f"cell_{i}" for i in range(args.n_cells)], dtype=str))
    mods = {
        mod: ad.AnnData(
            obs=obs.copy(),
            var=pd.DataFrame(index=[f"{mod}_{j}" for j in range(x.shape[1])]),
        )
        for mod, x in pool.items()
    }
    mdata = md.MuData(mods)
    mdata.obs[LABELS_KEY] = pd.Categorical.from_codes(
        types[draw], categories=[f"type_{t}" for t in range(args.n_types)]
    )
    mdata.write_h5mu(path)
    nbytes = dict.fromkeys(pool, 0)
    with h5py.File(path, "r+") as f:
        for start in range(0, args.n_cells, args.chunk):
            rows = draw[start : start + args.chunk]
            for mod, x in pool.items():
                block = x[rows]
                nbytes[mod] += block.data.nbytes + block.indices.nbytes + block.indptr.nbytes
                if start == 0:
                    write_elem(f[f"mod/{mod}"], "X", block)
                else:
                    sparse_dataset(f[f"mod/{mod}/X"]).append(block)
    return {
        "file_gib": path.stat().st_size / 2**30,
        "in_memory_counts_mib": {mod: n / MIB for mod, n in nbytes.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=1_000_000)
    parser.add_argument("--n-genes", type=int, default=1_000)
    parser.add_argument("--n-peaks", type=int, default=10_000)
    parser.add_argument("--n-types", type=int, default=5, help="number of cell types")
    parser.add_argument("--pool", type=int, default=50_000, help="simulated cells drawn from")
    parser.add_argument("--chunk", type=int, default=100_000, help="cells written at a time")
    parser.add_argument("--autoencoder-steps", type=int, default=500)
    parser.add_argument("--diffusion-steps", type=int, default=200)
    parser.add_argument("--n-translate", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=256, help="autoencoder minibatch")
    parser.add_argument(
        "--in-memory", action="store_true", help="read the file into memory instead (the control)"
    )
    parser.add_argument("--dir", default=None, help="where to write the file (default: a temp)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.n_cells, args.n_genes, args.n_peaks, args.n_types = 3000, 100, 400, 3
        args.pool, args.chunk, args.n_translate = 500, 1000, 500
        args.autoencoder_steps, args.diffusion_steps = 5, 5
    warnings.filterwarnings("ignore")
    scvi.settings.seed = args.seed
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "cells.h5mu"
        sizes, seconds, _ = measured(lambda: write_backed_file(path, args, rng))
        results = Results(
            Path(args.out) if args.out else RESULTS / "out_of_core.json",
            {
                "settings": {k: v for k, v in vars(args).items() if k != "dir"},
                "n_cells": args.n_cells,
                **sizes,
                "write_seconds": seconds,
                "peak_memory": peak_memory_method(),
                **provenance("out_of_core.py"),
            },
        )
        start_rss = rss_mib()
        mdata = md.read_h5mu(path, backed=None if args.in_memory else "r")
        state = {}

        def register():
            SCDX.setup_mudata(mdata, labels_key=LABELS_KEY, modalities=MODALITIES)
            state["model"] = SCDX(mdata)

        translate_rows = np.sort(rng.choice(args.n_cells, size=args.n_translate, replace=False))
        phases = {
            "setup": register,
            "autoencoder": lambda: state["model"].train_autoencoder(
                max_epochs=1, max_steps=args.autoencoder_steps, batch_size=args.batch_size,
                early_stopping=False, enable_progress_bar=False,
            ),
            "diffusion": lambda: state["model"].train_diffusion(
                max_steps=args.diffusion_steps, early_stopping=False, enable_progress_bar=False
            ),
            "translate": lambda: state["model"].get_translated_modality(
                source_modality="atac", target_modality="rna", indices=translate_rows,
                return_type="numpy",
            ),
        }  # fmt: skip
        for phase, fn in phases.items():
            out, seconds, peak = measured(fn)
            row = {"phase": phase, "seconds": seconds, "peak_mib": peak, "rss_mib": rss_mib(),
                   "high_water_mib": rss_mib("VmHWM"),
                   "rss_before_reading_mib": start_rss}  # fmt: skip
            if phase == "autoencoder":
                steps = int(state["model"].trainer.global_step)
                row.update(steps=steps, cells_per_second=steps * args.batch_size / seconds)
            elif phase == "diffusion":
                row.update(encoded_cells=args.n_cells, steps=args.diffusion_steps)
            elif phase == "translate":
                row.update(n_cells=len(translate_rows), cells_per_second=len(out) / seconds,
                           output_mib=out.nbytes / MIB)  # fmt: skip
            del out
            results.record(row)
    print(f"wrote {results.path}")


if __name__ == "__main__":
    main()
