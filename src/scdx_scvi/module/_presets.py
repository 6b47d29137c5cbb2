"""Autoencoder size presets of the reference implementation (``configs/encoder/*.yaml``)."""

from __future__ import annotations

from typing import Literal, NamedTuple

Architecture = Literal["small", "default", "large"]


class AutoencoderPreset(NamedTuple):
    """Layer widths, normalisation and optimiser settings of one preset."""

    n_hidden: dict[str, tuple[int, ...]]
    """Hidden widths of each modality's encoder; its decoder uses them reversed."""
    n_latent: dict[str, int]
    """Latent size of each modality."""
    norm: Literal["batchnorm", "layernorm"]
    lr: float
    weight_decay: float


# RNA and ATAC sizes, norms and optimiser settings are the reference's. The reference has no
# protein encoder: the protein sizes are ours, scaled to panels of tens to a few hundred ADTs.
PRESETS: dict[str, AutoencoderPreset] = {
    "small": AutoencoderPreset(
        n_hidden={"rna": (300, 150), "atac": (512, 256), "protein": (128, 64)},
        n_latent={"rna": 64, "atac": 64, "protein": 16},
        norm="layernorm",
        lr=5e-4,
        weight_decay=1e-4,
    ),
    "default": AutoencoderPreset(
        n_hidden={"rna": (512, 300), "atac": (1024, 512), "protein": (256, 128)},
        n_latent={"rna": 100, "atac": 100, "protein": 32},
        norm="batchnorm",
        lr=1e-3,
        weight_decay=1e-4,
    ),
    "large": AutoencoderPreset(
        n_hidden={"rna": (1024, 512), "atac": (2048, 1024), "protein": (512, 256)},
        n_latent={"rna": 150, "atac": 200, "protein": 64},
        norm="layernorm",
        lr=1e-3,
        weight_decay=1e-4,
    ),
}
