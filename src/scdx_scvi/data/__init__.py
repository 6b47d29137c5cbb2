"""User data: checks before registration, query alignment and mosaic padding."""

from ._mosaic import pad_mosaic
from ._query import align_features
from ._sparse import stack_rows
from ._validate import check_mudata, check_values, data_modalities, resolve_modalities

__all__ = [
    "align_features",
    "check_mudata",
    "check_values",
    "data_modalities",
    "pad_mosaic",
    "resolve_modalities",
    "stack_rows",
]
