"""Mosaic data: pad the modalities of a MuData to a common set of cells."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from ._validate import check_in_memory, to_csr


def pad_mosaic(mdata: MuData, observed_prefix: str = "has_") -> MuData:
    """Return a MuData in which every modality has every cell, unmeasured cells as zero rows.

    MuData stores unpaired cells by giving each modality only the cells it measured (the
    global ``obs`` is their union). :meth:`~scdx_scvi.model.SCDX.setup_mudata` needs the
    modalities aligned, so this pads each modality with all-zero rows (in ``.X`` and every
    layer) for the cells it lacks, in the global cell order, and adds boolean columns
    ``{observed_prefix}{modality}`` to ``obs`` (to pass as ``observed_keys``). The input is
    not modified.

    Parameters
    ----------
    mdata
        MuData whose modalities may cover different cells.
    observed_prefix
        Prefix of the added ``obs`` columns.

    Returns
    -------
    A new MuData with the same modalities, each with all ``mdata.n_obs`` cells.
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"pad_mosaic needs a MuData, got {type(mdata).__name__}.")
    if not isinstance(observed_prefix, str):
        raise TypeError(f"`observed_prefix` must be a string, got {observed_prefix!r}.")
    check_in_memory(mdata, "mdata")
    taken = [
        f"{observed_prefix}{name}" for name in mdata.mod if f"{observed_prefix}{name}" in mdata.obs
    ]
    if taken:
        raise ValueError(
            f"mdata.obs already has the column(s) {taken} that pad_mosaic would add; pass another "
            "`observed_prefix`."
        )
    cells = mdata.obs_names
    mods, observed = {}, {}
    for name, adata in mdata.mod.items():
        rows = cells.get_indexer(adata.obs_names)
        if (rows < 0).any() or not adata.obs_names.is_unique:
            raise ValueError(
                f"mdata.mod[{name!r}] has cells that are not unique in mdata.obs_names; "
                "call `mdata.update()` and make obs names unique first."
            )
        has = np.zeros(len(cells), dtype=bool)
        has[rows] = True
        observed[name] = has

        def pad(x, rows=rows):
            x = to_csr(x)
            placement = sparse.csr_matrix(
                (np.ones(len(rows), dtype=x.dtype), (rows, np.arange(len(rows)))),
                shape=(len(cells), len(rows)),
            )
            return (placement @ x).tocsr()

        obs = adata.obs.reindex(cells)
        mods[name] = AnnData(
            X=pad(adata.X),
            obs=obs,
            var=adata.var.copy(),
            layers={key: pad(value) for key, value in adata.layers.items()},
            uns=adata.uns.copy(),
        )
    padded = MuData(mods)
    padded.obs = mdata.obs.loc[padded.obs_names].copy()
    for name, has in observed.items():
        padded.obs[f"{observed_prefix}{name}"] = has[cells.get_indexer(padded.obs_names)]
    return padded
