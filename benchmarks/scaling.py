"""Memory and time of SCDX as the number of ATAC peaks grows, on synthetic sparse multiome data.

A paired RNA+ATAC MuData is simulated in memory and kept sparse throughout: RNA counts are
gamma-Poisson (negative binomial) draws whose means depend on the cell type, ATAC is binary
with 2-4% of the peaks open per cell, drawn from cell-type-specific peak profiles. Every cell
has at least one count in each modality. For each number of peaks, SCDX is set up and three
phases are measured: one autoencoder epoch, ``--diffusion-steps`` diffusion steps (which first
encode every cell once; without early stopping, as a run shorter than an epoch has no validation
loss) and the generation of ``--n-generate`` cells in chunks of ``--generate-batch-size``. Freed
memory is handed back to the system before each phase. Each phase gives one row with the seconds,
the peak memory above the start of the phase (the allocator's on a GPU, the kernel's high-water mark
of the resident set on the CPU, reset when the phase starts), the throughput (cells of the data set
per second for the two training phases, generated cells per second for generation), the process's
resident set at the end and its high-water mark during the phase (``high_water_mib``, absolute: the
data and the model included), the size of the sparse ATAC input and the size a dense float32 ATAC
matrix would take instead. The model is ``SCDX(mdata)`` with the package defaults unless
``--architecture``, ``--atac-hidden`` or ``--n-channels`` is given (beyond 100,000 peaks the
default ATAC widths are narrowed, :func:`scdx_scvi.module.atlas_widths`; ``atac_hidden`` in the
rows gives the widths used). SCDX's autoencoder stage trains with the package's policy for freed
memory, ``"release"``, unless ``--freed-memory`` names another
(:func:`scdx_scvi.train.freed_memory_policy`; ``freed_memory`` in the rows says which applied).
``--peer`` adds one MultiVI epoch on the same data, minibatch and process, for the ratio, twice:
as MultiVI runs by default, and with freed memory retained. ``--backed`` writes the simulated
MuData to a temporary ``.h5mu`` and reads it with ``backed="r"``, so that the counts stay on
disk (user guide, "Data larger than memory"); MultiVI, which needs them in memory, is then not
run.

Usage::

    python benchmarks/scaling.py                       # 20k cells, 100k and 200k peaks
    python benchmarks/scaling.py --n-peaks 200000 --peer
    python benchmarks/scaling.py --n-cells 2000 --n-peaks 20000 --n-generate 2000
    python benchmarks/scaling.py --quick               # a small smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scvi
from _common import (
    RESULTS,
    Results,
    measured,
    peak_memory_method,
    provenance,
    release_memory,
    rss_mib,
)
from scipy import sparse

from scdx_scvi import SCDX
from scdx_scvi.train import freed_memory_policy

LABELS_KEY = "cell_type"
#: Fields of a row that describe SCDX's model, left out of MultiVI's rows.
SCDX_FIELDS = ("architecture", "n_channels", "atac_hidden")
MIB = 2**20
#: Dense values per chunk of simulated RNA.
RNA_CHUNK_VALUES = 2**22
#: Sampled ATAC entries per chunk of simulated ATAC.
ATAC_CHUNK_VALUES = 2**23


def cell_types(n_cells: int, n_types: int, rng: np.random.Generator) -> np.ndarray:
    """Cell-type codes with unequal proportions."""
    weights = rng.dirichlet(np.full(n_types, 5.0))
    return rng.choice(n_types, size=n_cells, p=weights)


def simulate_rna(
    types: np.ndarray, n_genes: int, rng: np.random.Generator, theta: float = 2.0
) -> sparse.csr_matrix:
    """Gamma-Poisson counts (cells x genes, CSR float32), simulated a chunk of cells at a time.

    Gene means are gamma distributed; each cell type raises or lowers a tenth of the genes and
    each cell has a log-normal size factor. Cells left without counts get one count in a random
    gene.
    """
    n_types = int(types.max()) + 1
    base = rng.gamma(0.3, 1.0, size=n_genes)
    shift = np.ones((n_types, n_genes))
    for t in range(n_types):
        genes = rng.random(n_genes) < 0.1
        shift[t, genes] = rng.lognormal(0.0, 1.5, size=int(genes.sum()))
    size = rng.lognormal(0.0, 0.5, size=len(types))
    chunk = max(1, RNA_CHUNK_VALUES // n_genes)
    blocks = []
    for start in range(0, len(types), chunk):
        stop = min(start + chunk, len(types))
        mu = base * shift[types[start:stop]] * size[start:stop, None]
        counts = rng.poisson(rng.gamma(theta, mu / theta)).astype(np.float32)
        empty = np.flatnonzero(counts.sum(axis=1) == 0)
        counts[empty, rng.integers(n_genes, size=empty.size)] = 1
        blocks.append(sparse.csr_matrix(counts))
    return sparse.vstack(blocks, format="csr")


def peak_profiles(n_types: int, n_peaks: int, rng: np.random.Generator) -> np.ndarray:
    """Cumulative distribution over the peaks of each cell type, shape (types, peaks)."""
    base = rng.gamma(0.5, 1.0, size=n_peaks)
    cdf = np.empty((n_types, n_peaks))
    for t in range(n_types):
        weights = base.copy()
        weights[rng.random(n_peaks) < 0.05] *= 10.0  # peaks specific to the type
        np.cumsum(weights, out=cdf[t])
        cdf[t] /= cdf[t, -1]
    return cdf


def simulate_atac(
    types: np.ndarray,
    n_peaks: int,
    rng: np.random.Generator,
    density: tuple[float, float] = (0.02, 0.04),
) -> sparse.csr_matrix:
    """Binary accessibility (cells x peaks, CSR float32), built from its indices chunk by chunk.

    Each cell opens a uniform share in ``density`` of the peaks, drawn with replacement from
    its type's peak profile (repeats are merged, so the share is slightly lower), at least one.
    """
    n_cells = len(types)
    cdf = peak_profiles(int(types.max()) + 1, n_peaks, rng)
    per_row = np.clip(np.rint(rng.uniform(*density, size=n_cells) * n_peaks), 1, n_peaks)
    per_row = per_row.astype(np.int64)
    bound = int(per_row.sum())
    index_dtype = np.int32 if max(bound, n_peaks) < np.iinfo(np.int32).max else np.int64
    indices = np.empty(bound, dtype=index_dtype)
    indptr = np.zeros(n_cells + 1, dtype=index_dtype)
    nnz, start = 0, 0
    while start < n_cells:
        stop = start + max(1, int(np.searchsorted(np.cumsum(per_row[start:]), ATAC_CHUNK_VALUES)))
        stop = min(stop, n_cells)
        rows = np.repeat(np.arange(stop - start), per_row[start:stop])
        # uniforms sorted within each row, so that each row's peaks come out sorted
        uniforms = np.sort(rows + rng.random(rows.size)) - rows
        row_types = types[start:stop][rows]
        cols = np.empty(rows.size, dtype=np.int64)
        for t in np.unique(row_types):
            sel = row_types == t
            cols[sel] = np.searchsorted(cdf[t], uniforms[sel], side="right")
        np.minimum(cols, n_peaks - 1, out=cols)
        keep = np.ones(rows.size, dtype=bool)  # merge repeated peaks of a row
        keep[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
        n_kept = int(keep.sum())
        indices[nnz : nnz + n_kept] = cols[keep]
        indptr[start + 1 : stop + 1] = nnz + np.cumsum(
            np.bincount(rows[keep], minlength=stop - start)
        )
        nnz += n_kept
        start = stop
    data = np.ones(nnz, dtype=np.float32)
    # a copy of the indices used: a view would keep the whole bound (12 % more) resident
    return sparse.csr_matrix((data, indices[:nnz].copy(), indptr), shape=(n_cells, n_peaks))


def paired_mudata(rna: sparse.csr_matrix, atac: sparse.csr_matrix, types: np.ndarray) -> md.MuData:
    """MuData with modalities ``"rna"`` and ``"atac"`` and a categorical ``obs["cell_type"]``."""
    obs = pd.DataFrame(index=pd.Index([f"cell_{i}" for i in range(len(types))], dtype=str))
    mods = {
        "rna": ad.AnnData(
            X=rna,
            obs=obs.copy(),
            var=pd.DataFrame(index=[f"gene_{i}" for i in range(rna.shape[1])]),
        ),
        "atac": ad.AnnData(
            X=atac,
            obs=obs.copy(),
            var=pd.DataFrame(index=[f"peak_{i}" for i in range(atac.shape[1])]),
        ),
    }
    mdata = md.MuData(mods)
    n_types = int(types.max()) + 1
    mdata.obs[LABELS_KEY] = pd.Categorical.from_codes(
        types, categories=[f"type_{t}" for t in range(n_types)]
    )
    return mdata


def sparse_mib(x: sparse.csr_matrix) -> float:
    """Bytes of the CSR buffers (data, indices, indptr), in MiB."""
    return (x.data.nbytes + x.indices.nbytes + x.indptr.nbytes) / MIB


def peer_epoch(mdata: md.MuData, batch_size: int) -> int:
    """One MultiVI epoch on a copy of ``mdata``; return MultiVI's number of parameters."""
    data = mdata.copy()
    scvi.model.MULTIVI.setup_mudata(data, modalities={"rna_layer": "rna", "atac_layer": "atac"})
    peer = scvi.model.MULTIVI(data)
    peer.train(max_epochs=1, batch_size=batch_size, enable_progress_bar=False)
    return sum(p.numel() for p in peer.module.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=20_000)
    parser.add_argument("--n-genes", type=int, default=2_000)
    parser.add_argument("--n-peaks", default="100000,200000", help="comma list of peak counts")
    parser.add_argument("--n-types", type=int, default=5, help="number of cell types")
    parser.add_argument("--architecture", default=None, help="default: the package default's")
    parser.add_argument("--n-channels", type=int, default=None, help="default: the package's")
    parser.add_argument(
        "--peer", action="store_true", help="also one MultiVI epoch on the same data (the ratio)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="autoencoder minibatch")
    parser.add_argument("--diffusion-steps", type=int, default=50)
    parser.add_argument("--n-generate", type=int, default=20_000)
    parser.add_argument(
        "--generate-batch-size", type=int, default=None, help="cells per chunk (default: package's)"
    )
    parser.add_argument(
        "--atac-hidden", default=None, help="ATAC widths, e.g. 256,256 (package default's)"
    )
    parser.add_argument("--steps", type=int, default=10, help="dpm++2m steps of generation")
    parser.add_argument(
        "--freed-memory",
        choices=["release", "retain", "none"],
        default="release",
        help="train_autoencoder(freed_memory=...); none: the allocator left as it is",
    )
    parser.add_argument(
        "--backed", action="store_true", help="train from a backed .h5mu (counts stay on disk)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.backed and args.peer:
        parser.error("--peer needs the counts in memory; run it without --backed")
    if args.quick:
        args.n_cells, args.n_genes, args.n_peaks, args.n_types = 500, 200, "2000", 3
        args.n_channels, args.batch_size = 16, 128
        args.diffusion_steps, args.n_generate, args.generate_batch_size = 1, 500, 256
        args.steps = 2
    warnings.filterwarnings("ignore")
    scvi.settings.seed = args.seed
    policy = None if args.freed_memory == "none" else args.freed_memory
    with freed_memory_policy(policy) as applies:  # whether the autoencoder stage's applies
        pass
    results = Results(
        Path(args.out) if args.out else RESULTS / "scaling.json",
        {
            "settings": vars(args),
            "peak_memory": peak_memory_method(),
            **provenance("scaling.py"),
        },
    )

    folder = tempfile.TemporaryDirectory()  # the --backed files
    rng = np.random.default_rng(args.seed)
    types = cell_types(args.n_cells, args.n_types, rng)
    rna = simulate_rna(types, args.n_genes, rng)
    for n_peaks in (int(n) for n in args.n_peaks.split(",")):
        atac, seconds, _ = measured(
            lambda n_peaks=n_peaks: simulate_atac(
                types, n_peaks, np.random.default_rng([args.seed, n_peaks])
            )
        )
        mdata = paired_mudata(rna, atac, types)  # read only: one RNA matrix for every size
        sizes = {"atac_nnz": int(atac.nnz), "atac_input_mib": sparse_mib(atac)}
        if args.backed:  # the counts go to disk and out of memory
            path = Path(folder.name) / f"scaling_{n_peaks}.h5mu"
            mdata.write_h5mu(path)
            del mdata, atac
            release_memory()
            mdata = md.read_h5mu(path, backed="r")
        SCDX.setup_mudata(
            mdata, labels_key=LABELS_KEY, modalities={"rna_layer": "rna", "atac_layer": "atac"}
        )
        options = {"architecture": args.architecture, "n_channels": args.n_channels}
        if args.atac_hidden:
            options["n_hidden"] = {"atac": [int(w) for w in args.atac_hidden.split(",")]}
        model = SCDX(mdata, **{k: v for k, v in options.items() if v is not None})
        n_parameters = sum(p.numel() for p in model.module.parameters())
        common = {
            "n_cells": args.n_cells, "n_genes": args.n_genes, "n_peaks": n_peaks,
            **sizes, "atac_density": sizes["atac_nnz"] / (args.n_cells * n_peaks),
            "rna_input_mib": sparse_mib(rna), "backed": args.backed,
            "dense_atac_mib": args.n_cells * n_peaks * 4 / MIB,
            "simulate_atac_seconds": seconds, "n_parameters": n_parameters,
            "parameters_mib": sum(
                p.numel() * p.element_size() for p in model.module.parameters()
            ) / MIB,
            "architecture": model.options["architecture"],
            "n_channels": model.options["n_channels"],
            "atac_hidden": ",".join(
                str(layer.fc_layers[0][0].out_features)
                for layer in model.module.encoders["atac"].hidden
            ),
        }  # fmt: skip
        phases = {
            "autoencoder": lambda model=model: model.train_autoencoder(
                max_epochs=1, batch_size=args.batch_size, enable_progress_bar=False,
                freed_memory=policy,
            ),
            "diffusion": lambda model=model: model.train_diffusion(
                max_steps=args.diffusion_steps, early_stopping=False, enable_progress_bar=False
            ),
            "generate": lambda model=model: model.generate(
                n_cells=args.n_generate, seed=0, batch_size=args.generate_batch_size,
                sampler="dpm++2m", n_steps=args.steps,
            ),
        }  # fmt: skip
        for phase, fn in phases.items():
            out, seconds, peak = measured(fn)
            n = args.n_generate if phase == "generate" else args.n_cells
            row = {"phase": phase, "model": "SCDX", **common, "seconds": seconds, "peak_mib": peak,
                   "cells_per_second": n / seconds, "rss_mib": rss_mib(),
                   "high_water_mib": rss_mib("VmHWM")}  # fmt: skip
            if phase == "autoencoder":
                row.update(
                    epochs=1,
                    batch_size=args.batch_size,
                    freed_memory=policy if applies else None,
                )
            elif phase == "diffusion":
                steps = int(model.trainer.global_step)
                row.update(diffusion_steps=steps, steps_per_second=steps / seconds)
            else:
                generated = out["atac"].X
                row.update(
                    n_generated=args.n_generate, batch_size=args.generate_batch_size,
                    sampler="dpm++2m", n_steps=args.steps,
                    generated_atac_mib=sparse_mib(generated),
                    generated_atac_density=generated.nnz / (args.n_generate * n_peaks),
                )  # fmt: skip
                del generated
            del out
            results.record(row)
        del model, phases
        release_memory()
        for peer_policy in (None, "retain") if args.peer else ():
            with freed_memory_policy(peer_policy) as applied:
                n_peer, seconds, peak = measured(lambda m=mdata: peer_epoch(m, args.batch_size))
            inputs = {k: v for k, v in common.items() if k not in SCDX_FIELDS}
            results.record({
                "phase": "autoencoder", "model": "MultiVI", **inputs, "n_parameters": n_peer,
                "parameters_mib": n_peer * 4 / MIB, "seconds": seconds,
                "peak_mib": peak, "cells_per_second": args.n_cells / seconds, "rss_mib": rss_mib(),
                "high_water_mib": rss_mib("VmHWM"), "epochs": 1, "batch_size": args.batch_size,
                "freed_memory": peer_policy if applied else None,
            })  # fmt: skip
            release_memory()
        if args.backed:
            mdata.file.close()
        else:
            del atac
        del mdata
    folder.cleanup()
    print(f"wrote {results.path}")


if __name__ == "__main__":
    main()
