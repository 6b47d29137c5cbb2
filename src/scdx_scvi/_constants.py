"""Names shared by the data registration, the module and the model.

The three modalities map onto scvi-tools' own registry keys so that scvi utilities
(``view_anndata_setup``, data loaders, transfer of the setup) find the data where they expect it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from scvi import REGISTRY_KEYS

Modality = Literal["rna", "atac", "protein"]


class ModalitySpec(NamedTuple):
    """How one modality is registered and summarised."""

    registry_key: str
    """Key of the layer in the scvi data registry (and in every minibatch)."""
    setup_arg: str
    """Name of the ``setup_mudata`` argument that holds the layer (and keys ``modalities``)."""
    summary_stat: str
    """Summary statistic with the number of features, as scvi's layer fields name it."""
    feature_noun: str
    """What one feature is called in messages."""

    @property
    def observed_key(self) -> str:
        """Registry key of the optional per-cell mask saying that the modality was measured."""
        return f"{self.registry_key}_observed"


MODALITIES: dict[str, ModalitySpec] = {
    "rna": ModalitySpec(REGISTRY_KEYS.X_KEY, "rna_layer", "n_vars", "gene"),
    "atac": ModalitySpec(REGISTRY_KEYS.ATAC_X_KEY, "atac_layer", "n_atac", "peak"),
    "protein": ModalitySpec(
        REGISTRY_KEYS.PROTEIN_EXP_KEY, "protein_layer", "n_proteins", "protein"
    ),
}
"""Supported modalities, in the canonical order used for latents and outputs."""

# Common names of each modality in ``mdata.mod``, tried in order when ``modalities`` is not given.
MODALITY_ALIASES: dict[str, tuple[str, ...]] = {
    "rna": ("rna", "gex", "expression", "RNA", "GEX"),
    "atac": ("atac", "accessibility", "peaks", "ATAC"),
    "protein": ("protein", "prot", "adt", "protein_expression", "ADT", "cite"),
}


class MODULE_KEYS:
    """Keys of the dictionaries that flow between ``inference``, ``generative`` and ``loss``."""

    X = "x"
    Z = "z"
    LIBRARY = "library"
    BATCH_INDEX = "batch_index"
    PX = "px"
    PX_CROSS = "px_cross"
    OBSERVED = "observed"
    TARGET = "target"
