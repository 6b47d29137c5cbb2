"""Checks of the arguments that select data: cell positions, feature names, keyed mappings.

They follow the scalar checks of :mod:`scdx_scvi.model._checks` (``check_int`` and friends):
each returns the value in a canonical form or raises an error that names the argument, what it
received, and what to pass instead.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np


def check_mapping_keys(value: object, name: str, allowed: Collection[str]) -> dict:
    """Return ``value`` as a ``dict`` if it is a mapping whose keys are all in ``allowed``."""
    if not hasattr(value, "keys"):
        raise TypeError(
            f"`{name}` must be a mapping with keys among {list(allowed)}, got "
            f"{type(value).__name__} {value!r}."
        )
    unknown = [key for key in value if key not in allowed]
    if unknown:
        raise ValueError(f"`{name}` has unknown key(s) {unknown}; allowed keys: {list(allowed)}.")
    return dict(value)


def check_names(value: object, name: str) -> list | None:
    """Return a non-empty list of names (``None`` passes through); refuse a bare string."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray | set):
        raise TypeError(
            f"`{name}` must be a list of names (or None for all), got {type(value).__name__} "
            f"{value!r}; wrap a single name in a list, e.g. [{value!r}]."
        )
    names = list(value)
    if not names:
        raise ValueError(f"`{name}` is empty; pass None for all of them.")
    return names


def check_indices(
    value: object, n_obs: int, name: str = "indices", allow_empty: bool = False
) -> np.ndarray | None:
    """Return cell positions as an integer array (``None`` passes through).

    Accepts integer positions in ``[0, n_obs)`` or a boolean mask of length ``n_obs``; refuses
    negative or out-of-range positions, non-integer values and, unless ``allow_empty``, empty
    selections.
    """
    if value is None:
        return None
    if isinstance(value, str | bytes) or np.ndim(value) != 1:
        raise TypeError(
            f"`{name}` must be a 1-d list or array of cell positions (or a boolean mask), got "
            f"{type(value).__name__}."
        )
    array = np.asarray(value)
    if array.dtype == bool:
        if array.size != n_obs:
            raise ValueError(
                f"Boolean `{name}` has {array.size} entries; the data has {n_obs} cells."
            )
        array = np.flatnonzero(array)
    elif array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"`{name}` must hold integer cell positions (or be a boolean mask), got dtype "
            f"{array.dtype}; for cell names use `mdata.obs_names.get_indexer(names)`."
        )
    if array.size == 0 and not allow_empty:
        raise ValueError(f"`{name}` selects no cells; pass None for all cells.")
    bad = array[(array < 0) | (array >= n_obs)]
    if bad.size:
        raise ValueError(
            f"`{name}` has position(s) outside [0, {n_obs}) (e.g. {bad[:5].tolist()}); the data "
            f"has {n_obs} cells."
        )
    return array.astype(np.int64)
