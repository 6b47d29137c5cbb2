"""User data: checks before registration, query alignment, mosaic padding, genomic coordinates."""

from ._genome import (
    DEFAULT_WINDOW,
    candidate_pairs,
    gene_tss,
    parse_regions,
    peak_coordinates,
    read_tss_bed,
)
from ._mosaic import pad_mosaic
from ._query import align_features
from ._sparse import stack_rows
from ._validate import check_mudata, check_values, data_modalities, resolve_modalities

__all__ = [
    "DEFAULT_WINDOW",
    "align_features",
    "candidate_pairs",
    "check_mudata",
    "check_values",
    "data_modalities",
    "gene_tss",
    "pad_mosaic",
    "parse_regions",
    "peak_coordinates",
    "read_tss_bed",
    "resolve_modalities",
    "stack_rows",
]
