"""Mosaic data: pad the modalities of a MuData to a common set of cells."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from mudata import MuData
from scipy import sparse


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
            x = sparse.csr_matrix(x)
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
