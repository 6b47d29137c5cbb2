"""Checks of a user's MuData before it is registered, with errors that say how to fix the input.

Nothing here changes the user's data, with one documented exception: a layer stored as a scipy
sparse *array* is re-wrapped as the equivalent sparse *matrix* (same values, same buffers),
because scvi-tools 1.4 cannot read sparse arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence

import h5py
import numpy as np
import pandas as pd
from anndata import AnnData
from anndata.abc import CSCDataset, CSRDataset
from mudata import MuData
from scipy import sparse

from scdx_scvi._compat import _SCVI_UUID_KEY
from scdx_scvi._constants import MODALITIES, MODALITY_ALIASES

from ._checks import check_mapping_keys

logger = logging.getLogger(__name__)

#: Rows per block when a dense layer is scanned, to bound memory.
_DENSE_CHUNK = 4096
#: Rows per block when a backed (on-disk) sparse layer is scanned.
_BACKED_CHUNK = 65536
#: Cells named in an error message, at most.
_N_EXAMPLES = 5
#: Prefix of the obs columns that scvi-tools' registration writes.
_SCVI_PREFIX = "_scvi_"

COUNT_MODALITIES = ("rna", "protein")
"""Modalities scored by a count likelihood: their layers must hold non-negative integers."""


def resolve_modalities(
    mdata: MuData, modalities: Mapping[str, str] | None, setup_args: Mapping[str, object]
) -> dict[str, str]:
    """Return the ``modalities`` mapping of ``setup_mudata``, inferred from names if not given.

    Parameters
    ----------
    mdata
        The user's MuData.
    modalities
        Mapping from ``setup_mudata`` argument names (``"rna_layer"``, ``"atac_layer"``,
        ``"protein_layer"``, ``"batch_key"``, ``"labels_key"``) to modality names in
        ``mdata.mod``, or ``None`` to infer the data modalities from common names
        (``"rna"``, ``"atac"``, ``"protein"``, ``"prot"``, ``"adt"``, ...).
    setup_args
        The other arguments of ``setup_mudata`` (used only in messages).
    """
    if not isinstance(mdata, MuData):
        hint = (
            " Wrap your modalities in a MuData, e.g. "
            "`mudata.MuData({'rna': rna_adata, 'atac': atac_adata})`."
            if isinstance(mdata, AnnData)
            else ""
        )
        raise TypeError(f"SCDX.setup_mudata expects a MuData, got {type(mdata).__name__}.{hint}")
    available = list(mdata.mod.keys())
    if modalities is None:
        modalities = {}
        for name, spec in MODALITIES.items():
            found = [alias for alias in MODALITY_ALIASES[name] if alias in mdata.mod]
            if found:
                modalities[spec.setup_arg] = found[0]
        if len(modalities) < 2:
            raise ValueError(
                f"Could not tell which of the modalities {available} are RNA, ATAC and protein. "
                "Pass them explicitly, e.g. "
                "`modalities={'rna_layer': 'rna', 'atac_layer': 'atac'}`."
            )
        logger.info("Using modalities %s (inferred from the names in mdata.mod).", modalities)
    else:
        allowed = [spec.setup_arg for spec in MODALITIES.values()] + ["batch_key", "labels_key"]
        modalities = check_mapping_keys(modalities, "modalities", allowed)
    for arg, mod in modalities.items():
        if not isinstance(mod, str):
            raise TypeError(
                f"`modalities[{arg!r}]` must be the name of a modality in mdata.mod, got {mod!r}; "
                f"available modalities: {available}."
            )
        if mod not in mdata.mod:
            raise ValueError(
                f"`modalities[{arg!r}]` is {mod!r}, but mdata has no such modality; "
                f"available modalities: {available}."
            )
    data_args = [spec.setup_arg for spec in MODALITIES.values() if spec.setup_arg in modalities]
    names = [modalities[arg] for arg in data_args]
    if len(set(names)) < len(names):
        shared = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(
            f"`modalities` registers mdata.mod[{shared[0]!r}] as more than one kind of data "
            f"({[arg for arg in data_args if modalities[arg] in shared]}); each of RNA, ATAC and "
            "protein must be a different modality."
        )
    if len(data_args) < 2:
        raise ValueError(
            "SCDX needs at least two modalities among RNA, ATAC and protein; `modalities` names "
            f"only {data_args}. Add e.g. 'atac_layer': 'atac' or 'protein_layer': 'protein'."
        )
    for arg in ("batch_key", "labels_key"):
        if setup_args.get(arg) is None and arg in modalities:
            raise ValueError(f"`modalities[{arg!r}]` is given but `{arg}` is None.")
    return modalities


def data_modalities(modalities: Mapping[str, str]) -> dict[str, str]:
    """Return ``{canonical modality: name in mdata.mod}`` in the canonical order."""
    return {
        name: modalities[spec.setup_arg]
        for name, spec in MODALITIES.items()
        if spec.setup_arg in modalities
    }


def check_mudata(
    mdata: MuData,
    layers: Mapping[str, tuple[str, str | None]],
    obs_keys: Mapping[str, tuple[str | None, str | None]],
    observed_keys: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """Validate a MuData before registration; raise with a fix for every problem found.

    Parameters
    ----------
    mdata
        The user's MuData.
    layers
        ``{canonical modality: (name in mdata.mod, layer or None for .X)}``.
    obs_keys
        ``{setup argument: (obs column or None, modality holding it or None for mdata.obs)}``.
    observed_keys
        ``{canonical modality: boolean column of mdata.obs}`` marking the cells that have it.

    Returns
    -------
    Whether each cell has each modality, ``{canonical modality: (cells,) bool}``.
    """
    if mdata.is_view:
        raise ValueError(
            "mdata is a view (a subset of another MuData). Registration writes keys into the "
            "object, so make it an actual object first: `mdata = mdata.copy()`."
        )
    if mdata.n_obs == 0:
        raise ValueError("mdata has no cells; pass a MuData with at least one cell.")
    check_unique_names(mdata.obs_names, "mdata.obs_names", "cell", "mdata.obs_names_make_unique()")
    observed_keys = (
        {} if observed_keys is None else check_mapping_keys(observed_keys, "observed_keys", layers)
    )
    observed = {}
    for modality, (mod, layer) in layers.items():
        _check_name(layer, f"`{MODALITIES[modality].setup_arg}`", "a layer name or None")
        adata = mdata.mod[mod]
        _check_paired(mdata, mod, adata)
        noun = MODALITIES[modality].feature_noun
        if adata.n_vars == 0:
            raise ValueError(f"mdata.mod[{mod!r}] has no {noun}s; SCDX needs at least one.")
        check_unique_names(
            adata.var_names,
            f"mdata.mod[{mod!r}].var_names",
            noun,
            f"mdata.mod[{mod!r}].var_names_make_unique()` then `mdata.update()",
        )
        _coerce_sparse_array(adata, mod, layer)
        x = _get_layer(adata, mod, layer)
        observed[modality] = check_values(x, modality, f"mdata.mod[{mod!r}].{_where(layer)}")
        if modality in observed_keys:
            observed[modality] &= _observed_column(mdata, modality, observed_keys[modality])
    _check_coverage(observed)
    for arg, (key, mod) in obs_keys.items():
        if key is None:
            continue
        _check_name(key, f"`{arg}`", "a column name")
        obs = mdata.obs if mod is None else mdata.mod[mod].obs
        where = "mdata.obs" if mod is None else f"mdata.mod[{mod!r}].obs"
        if key not in obs.columns:
            raise KeyError(
                f"`{arg}={key!r}` is not a column of {where}; columns: {list(obs.columns)}."
            )
        n_missing = int(pd.isna(obs[key]).sum())
        if n_missing:
            raise ValueError(
                f"{where}[{key!r}] has {n_missing} missing value(s). Fill or drop them first, "
                f"e.g. `{where}[{key!r}] = {where}[{key!r}].astype(str).fillna('unknown')`, "
                f"or subset to labelled cells."
            )
    return observed


def check_in_memory(data: AnnData | MuData, where: str) -> None:
    """Refuse data read with ``backed=`` where a new in-memory object is built from it."""
    mods = data.mod.values() if isinstance(data, MuData) else ()
    if data.isbacked or any(adata.isbacked for adata in mods):
        raise ValueError(
            f"{where} is backed (read with `backed=...`): its counts stay on disk, and this "
            "step builds a new object in memory from them. Read the file without `backed` "
            "(`mudata.read_h5mu(path)` or `anndata.read_h5ad(path)`), or load an AnnData into "
            "memory with `adata.to_memory()`."
        )


def check_unique_names(names: pd.Index, where: str, noun: str, fix: str) -> None:
    """Refuse duplicated names: cells and features are matched by name."""
    if not names.is_unique:
        duplicated = names[names.duplicated()].unique()[:_N_EXAMPLES].tolist()
        raise ValueError(
            f"{where} has duplicated {noun} names (e.g. {duplicated}); SCDX matches {noun}s by "
            f"name, so make them unique first: `{fix}`."
        )


def check_reserved_columns(
    mdata: MuData, mods: Iterable[str], keys: Mapping[str, str | None]
) -> None:
    """Refuse user columns that scvi-tools' registration would overwrite or that hold its codes.

    Parameters
    ----------
    mdata
        The MuData about to be registered.
    mods
        Names of its registered modalities (registration can write into their ``obs``).
    keys
        ``{setup argument: obs column or None}`` for every argument that names a column.
    """
    for arg, key in keys.items():
        if isinstance(key, str) and key.startswith(_SCVI_PREFIX):
            raise ValueError(
                f"`{arg}={key!r}` names a column that scvi-tools writes at registration (integer "
                "codes, not your data). Pass the column it was made from, or rename your column "
                "to a name that does not start with '_scvi_'."
            )
    if _SCVI_UUID_KEY in mdata.uns:  # registered before: the '_scvi_' columns are scvi's own
        return
    frames = {"mdata.obs": mdata.obs}
    frames |= {f"mdata.mod[{mod!r}].obs": mdata.mod[mod].obs for mod in mods}
    for where, obs in frames.items():
        reserved = [c for c in obs.columns if str(c).startswith(_SCVI_PREFIX)]
        if reserved:
            raise ValueError(
                f"{where} has column(s) {reserved}: scvi-tools reserves names starting with "
                "'_scvi_' and would overwrite them at registration. Rename them first, e.g. "
                f"`{where}.rename(columns={{{reserved[0]!r}: {reserved[0][1:]!r}}}, "
                "inplace=True)`."
            )


def _check_name(value: object, what: str, expected: str) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{what} must be {expected}, got {value!r}.")


def _observed_column(mdata: MuData, modality: str, key: str) -> np.ndarray:
    _check_name(key, f"`observed_keys[{modality!r}]`", "a column name")
    if key not in mdata.obs.columns:
        raise KeyError(
            f"`observed_keys[{modality!r}]={key!r}` is not a column of mdata.obs; columns: "
            f"{list(mdata.obs.columns)}."
        )
    column = mdata.obs[key]
    values = column.to_numpy()
    if column.isna().any() or not (
        pd.api.types.is_bool_dtype(column) or np.isin(values, (0, 1)).all()
    ):
        raise ValueError(
            f"mdata.obs[{key!r}] must be boolean (True where the cell has {modality}) without "
            "missing values."
        )
    return values.astype(bool)


def _check_coverage(observed: Mapping[str, np.ndarray]) -> None:
    """Log cells without a modality; refuse cells with none."""
    has_any = np.logical_or.reduce(list(observed.values()))
    if not has_any.all():
        empty = np.flatnonzero(~has_any)
        raise ValueError(
            f"{empty.size} cell(s) have no counts in any modality (positions "
            f"{empty[:_N_EXAMPLES].tolist()}{'...' if empty.size > _N_EXAMPLES else ''}); "
            "there is nothing to learn from them. Remove them, e.g. `mdata = mdata[keep].copy()`."
        )
    for modality, has in observed.items():
        if not has.all():
            logger.info(
                "%d of %d cells have no %s (zero counts or marked unobserved): they are "
                "treated as unmeasured in that modality (mosaic data).",
                int((~has).sum()), has.size, modality,
            )  # fmt: skip


def check_values(x, modality: str, where: str) -> np.ndarray:
    """Check that ``x`` (a layer of ``modality``) is finite, non-negative, and counts if needed.

    Returns whether each cell (row) has counts.

    Sparse layers are checked through their stored values; dense layers block by block, so the
    check never holds a second dense copy of the layer.
    """
    must_be_integer = modality in COUNT_MODALITIES
    n_cells = x.shape[0]
    row_totals = np.zeros(n_cells, dtype=np.float64)
    for start, block in _blocks(x):
        values = block.data if sparse.issparse(block) else np.asarray(block)
        if values.dtype == bool:  # binary accessibility (or presence) stored as booleans
            values = values.view(np.uint8)
        if not np.issubdtype(values.dtype, np.number):
            raise TypeError(
                f"{where} has non-numeric dtype {values.dtype}; SCDX needs counts, e.g. "
                "convert them with `.astype(np.float32)`."
            )
        if not np.isfinite(values).all():
            raise ValueError(
                f"{where} contains NaN or infinite values. SCDX needs raw counts; "
                "check the layer, or replace missing values before setup."
            )
        if (values < 0).any():
            raise ValueError(
                f"{where} contains negative values (min {values.min():g}). SCDX needs raw, "
                "non-negative counts: pass the layer holding counts, not scaled or centred data."
            )
        if must_be_integer and (values != np.round(values)).any():
            raise ValueError(
                f"{where} contains non-integer values, but the {modality} likelihood is a "
                "negative binomial on raw counts. Pass the raw-count layer (e.g. "
                f"`{MODALITIES[modality].setup_arg}='counts'`), not normalised or log data."
            )
        stop = start + block.shape[0]
        row_totals[start:stop] = np.asarray(block.sum(axis=1)).ravel()
    return row_totals > 0


def _blocks(x) -> Iterator[tuple[int, object]]:
    if sparse.issparse(x):  # stored values and row sums need no dense copy
        yield 0, x
        return
    chunk = _BACKED_CHUNK if isinstance(x, CSRDataset | CSCDataset) else _DENSE_CHUNK
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk]
        yield start, block if sparse.issparse(block) else np.asarray(block)


def _check_paired(mdata: MuData, mod: str, adata: AnnData) -> None:
    if adata.n_obs != mdata.n_obs or not adata.obs_names.equals(mdata.obs_names):
        n_shared = len(adata.obs_names.intersection(mdata.obs_names))
        same_set = n_shared == adata.n_obs == mdata.n_obs
        problem = (
            "lists the same cells in a different order"
            if same_set
            else f"has {adata.n_obs} cells, {n_shared} of the {mdata.n_obs} cells of mdata"
        )
        raise ValueError(
            f"Modality {mod!r} {problem}. SCDX needs paired data: every modality with the same "
            "cells in the same order. Take the shared cells with "
            "`muon.pp.intersect_obs(mdata)`, or rebuild the MuData from modalities subset to "
            "the same `obs_names` order."
        )


def _where(layer: str | None) -> str:
    return "X" if layer is None else f"layers[{layer!r}]"


def _get_layer(adata: AnnData, mod: str, layer: str | None):
    if layer is None:
        if adata.X is None:
            raise ValueError(f"mdata.mod[{mod!r}].X is empty; name the layer holding the counts.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"Layer {layer!r} not found in mdata.mod[{mod!r}]; available layers: "
            f"{list(adata.layers.keys())} (None means .X)."
        )
    return adata.layers[layer]


def read_rows(x, rows: Sequence[int] | None = None) -> sparse.csr_matrix:
    """Return the ``rows`` of a layer (all if ``None``) as a CSR matrix, reading only them.

    ``x`` may be in memory (dense or sparse) or backed on disk (an h5py dataset or an
    anndata backed sparse dataset); from disk only the requested rows are read, in file order.
    """
    if rows is None:
        return to_csr(x if _in_memory(x) else x[:])
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return sparse.csr_matrix((0, x.shape[1]), dtype=np.float32)
    if _in_memory(x):
        return to_csr(x[rows])
    order = np.argsort(rows, kind="stable")  # files are read fastest (h5py: only) in order
    unique, inverse = np.unique(rows[order], return_inverse=True)
    block = to_csr(x[unique])[inverse]
    return block[np.argsort(order, kind="stable")]


def _in_memory(x) -> bool:
    return not isinstance(x, CSRDataset | CSCDataset | h5py.Dataset)


def to_csr(x) -> sparse.csr_matrix:
    """Return ``x`` as a CSR matrix; float16 values (which scipy.sparse lacks) become float32."""
    if getattr(x, "dtype", None) == np.float16:
        x = x.astype(np.float32)
    return sparse.csr_matrix(x)


def _coerce_sparse_array(adata: AnnData, mod: str, layer: str | None) -> None:
    x = adata.X if layer is None else adata.layers[layer] if layer in adata.layers else None
    if isinstance(x, sparse.sparray):
        coerced = sparse.csr_matrix(x) if x.format == "csr" else sparse.csc_matrix(x)
        if layer is None:
            adata.X = coerced
        else:
            adata.layers[layer] = coerced
        logger.info(
            "mdata.mod[%r].%s is a scipy sparse array; re-wrapped it as a %s (same values) "
            "because scvi-tools reads sparse matrices only.",
            mod,
            _where(layer),
            type(coerced).__name__,
        )
