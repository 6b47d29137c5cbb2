"""Bring a query (cells of one modality) onto the training features, matched by name."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from scdx_scvi._constants import MODALITIES

from ._validate import check_unique_names, check_values, read_rows

logger = logging.getLogger(__name__)


def align_features(
    adata: AnnData,
    features: Sequence[str],
    modality: str,
    layer: str | None = None,
    where: str = "adata",
    rows: Sequence[int] | None = None,
) -> tuple[sparse.csr_matrix, int]:
    """Return the query's values in the training feature order, and how many are missing.

    Features are matched by name; training features the query lacks are filled with zeros
    (reported in the log), query features the model does not know are dropped. The values are
    checked like training data (finite, non-negative, counts where the likelihood needs them).

    Parameters
    ----------
    adata
        Query cells of one modality.
    features
        Training feature names, in order.
    modality
        Canonical modality (``"rna"``, ``"atac"``, ``"protein"``), for the value checks.
    layer
        Layer with raw values (``None``: ``.X``).
    where
        How to name ``adata`` in messages.
    rows
        Positions of the cells to read (``None``: all). Only these rows are read and checked,
        so a backed query (``anndata.read_h5ad(path, backed="r")``) reads just them from disk.

    Returns
    -------
    ``(len(rows) x len(features) CSR float32, number of training features filled with zeros)``.
    """
    if layer is not None and layer not in adata.layers:
        raise KeyError(
            f"Layer {layer!r} not found in {where}.layers (layers: {list(adata.layers.keys())}); "
            "pass `layer=None` for .X."
        )
    names = adata.var_names
    check_unique_names(names, f"{where}.var_names", "feature", f"{where}.var_names_make_unique()")
    features = np.asarray(features).astype(str)
    columns = names.get_indexer(features)
    found = columns >= 0
    n_found = int(found.sum())
    if n_found == 0:
        raise ValueError(
            f"None of the {len(features)} {modality} features of the model is in {where} "
            f"(model: {features[:3].tolist()}..., query: {names[:3].tolist()}...). Features are "
            "matched by `var_names`; set them to the same identifiers the model was trained on."
        )
    x = read_rows(adata.X if layer is None else adata.layers[layer], rows)
    has_counts = check_values(
        x, modality, f"{where}.{'X' if layer is None else f'layers[{layer!r}]'}"
    )
    if not has_counts.all():
        logger.warning(
            "%d query cell(s) have no %s counts; their translation is the model's marginal.",
            int((~has_counts).sum()), modality,
        )  # fmt: skip
    # a selection matrix keeps the result sparse: query columns -> training columns
    select = sparse.csr_matrix(
        (np.ones(n_found, dtype=np.float32), (columns[found], np.flatnonzero(found))),
        shape=(x.shape[1], len(features)),
    )
    aligned = (x.astype(np.float32) @ select).tocsr()
    n_missing = len(features) - n_found
    if n_missing:
        logger.warning(
            "%d of %d %s features of the model are not in %s; they are filled with zeros.",
            n_missing, len(features), modality, where,
        )  # fmt: skip
    return aligned, n_missing


def check_training_features(
    mdata: MuData, modality_names: Mapping[str, str], feature_names: Mapping[str, np.ndarray]
) -> None:
    """Refuse a MuData whose modalities or features differ from the training data's.

    ``modality_names`` maps each modality (``"rna"``) to its name in ``mdata.mod``;
    ``feature_names`` gives the training features of each modality, in their order.
    """
    for m, mod in modality_names.items():
        if mod not in mdata.mod:
            raise ValueError(
                f"The model was trained with modality {mod!r} ({m}); the MuData has "
                f"{list(mdata.mod.keys())}."
            )
        expected = feature_names[m]
        found = mdata.mod[mod].var_names.to_numpy().astype(str)
        if len(found) != len(expected) or not np.array_equal(found, expected):
            raise ValueError(_feature_mismatch_message(m, mod, expected, found))


def _feature_mismatch_message(modality: str, mod: str, expected, found) -> str:
    noun = MODALITIES[modality].feature_noun
    if len(found) != len(expected):
        detail = f"the model has {len(expected)} {noun}s, the MuData {len(found)}"
    elif set(found) == set(expected):
        detail = f"the same {noun}s in a different order"
    else:
        i = int(np.flatnonzero(found != expected)[0])
        detail = f"{noun} {i} is {str(found[i])!r} where the model has {str(expected[i])!r}"
    return (
        f"The {mod!r} features of the MuData do not match the model's: {detail}. Subset and "
        "order them as in training, e.g. build the MuData from "
        f"`mdata.mod[{mod!r}][:, model.feature_names_[{modality!r}]]`."
    )
