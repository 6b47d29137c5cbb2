"""Checks of the public arguments of :class:`~scdx_scvi.model.SCDX` (types, ranges, choices).

Each check names the argument in its message, so a bad value is reported as the user's mistake
rather than as an error from deep inside numpy, anndata or torch.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection
from typing import Any

from anndata import AnnData
from mudata import MuData


def check_int(
    value: Any, name: str, minimum: int = 1, maximum: int | None = None, optional: bool = False
) -> int | None:
    """Return ``value`` as an ``int`` after checking its type and range.

    Parameters
    ----------
    value
        The user's value.
    name
        The argument's name, for the message.
    minimum, maximum
        Allowed range (inclusive).
    optional
        Whether ``None`` is allowed (it is returned unchanged).

    Raises
    ------
    TypeError
        If ``value`` is not an integer (``bool`` and integral floats such as ``5.0`` included).
    ValueError
        If ``value`` is out of range.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        allowed = "an integer or None" if optional else "an integer"
        raise TypeError(f"`{name}` must be {allowed}, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be at most {maximum}, got {value}.")
    return value


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as a ``float`` after checking that it is a finite number above 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__}).")
    if not 0 < float(value) < float("inf"):
        raise ValueError(f"`{name}` must be a finite number above 0, got {value}.")
    return float(value)


def check_choice(value: Any, name: str, choices: Collection) -> Any:
    """Return ``value`` if it is one of ``choices``; the message lists them."""
    if not isinstance(value, str | type(None)) or value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (a truthy string is not)."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False, got {value!r} ({type(value).__name__}).")
    return value


def check_fraction(value: Any, name: str, include_one: bool = False) -> float:
    """Return ``value`` as a ``float`` after checking that it lies in [0, 1) (or [0, 1])."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__}).")
    if not (0 <= float(value) <= 1 if include_one else 0 <= float(value) < 1):
        raise ValueError(f"`{name}` must be in [0, {'1]' if include_one else '1)'}, got {value}.")
    return float(value)


def check_is_mudata(data: object, who: str) -> None:
    """Raise a ``TypeError`` naming ``who`` unless ``data`` is a MuData."""
    if not isinstance(data, MuData):
        hint = (
            " Wrap the modalities in a MuData, e.g. `mudata.MuData({'rna': rna, 'atac': atac})`."
            if isinstance(data, AnnData)
            else ""
        )
        raise TypeError(f"{who} needs a MuData, got {type(data).__name__}.{hint}")
