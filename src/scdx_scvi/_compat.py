"""The private scvi-tools names this package uses, imported in one place (1.4.2 to 1.5.x)."""

from __future__ import annotations

from scvi.data._constants import _FIELD_REGISTRIES_KEY, _SETUP_ARGS_KEY, _STATE_REGISTRY_KEY
from scvi.model._utils import _get_batch_code_from_category
from scvi.utils import setup_anndata_dsp
from scvi.utils._docstrings import devices_dsp

__all__ = [
    "_FIELD_REGISTRIES_KEY",
    "_SETUP_ARGS_KEY",
    "_STATE_REGISTRY_KEY",
    "_get_batch_code_from_category",
    "devices_dsp",
    "setup_anndata_dsp",
]
