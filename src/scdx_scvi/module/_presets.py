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


#: Peaks beyond which the ``"scdx"`` configuration narrows the ATAC layers (atlas scale).
ATLAS_PEAKS = 100_000


def atlas_widths(widths: tuple[int, ...], n_peaks: int) -> tuple[int, ...]:
    """ATAC widths whose peak-sized layers hold no more weights than at :data:`ATLAS_PEAKS`.

    The encoder's first layer and the decoder's last have ``widths[0]`` weights per peak; with
    their gradients and AdamW's two moments they take most of the training memory. Up to
    ``ATLAS_PEAKS`` peaks the widths are returned as they are; beyond, every width is capped at
    ``widths[0] * ATLAS_PEAKS / n_peaks``, rounded down to a multiple of 64 (at least 64), so
    that those two layers stop growing with the number of peaks: ``(512, 256)`` becomes
    ``(256, 256)`` at 200,000 peaks.
    """
    if n_peaks <= ATLAS_PEAKS:
        return tuple(widths)
    cap = max(64, widths[0] * ATLAS_PEAKS // n_peaks // 64 * 64)
    return tuple(min(int(w), cap) for w in widths)


Configuration = Literal["scdx", "reference"]

#: Model options of each configuration of :class:`~scdx_scvi.model.SCDX`; an option passed
#: explicitly to ``SCDX(...)`` overrides the configuration's value. ``"scdx"`` is the measured
#: default (the user guide gives the study behind every value); ``"reference"`` reproduces
#: scDiffusion-X as its authors implemented it (``method.md``: ``encoder_multimodal`` preset,
#: raw-count encoder input, summed NLLs, no batch covariate, two unrelated per-modality latents,
#: the scalar-token DCA U-Net with C = 128, latents scaled to an average SD of 0.1,
#: epsilon-prediction, no label dropout, joint-only training, library sizes of generated cells
#: from the per-label log-normal).
MODEL_CONFIGURATIONS: dict[str, dict] = {
    "scdx": {
        "architecture": "small",
        "atlas_widths": True,
        "n_latent": "shared",
        "encoder_input": "counts",
        "reconstruction_weights": "sum",
        "use_batch": True,
        "cross_reconstruction": 1.0,
        "latent_agreement": 0.0,
        "denoiser": "faithful",
        "n_channels": 64,
        "source_injection": True,
        "latent_scaling": "per_dim",
        "label_dropout": 0.1,
        "condition_prob": 0.5,
        "condition_label_dropout": 0.5,
        "condition_noise": 500,
        "gaussian_residual": True,
        "prediction": "v",
        "generation_depth": "training_cells",
        "protein_likelihood": "nb_mixture",
    },
    "reference": {
        "architecture": "default",
        "atlas_widths": False,
        "n_latent": None,
        "encoder_input": "counts",
        "reconstruction_weights": "sum",
        "use_batch": False,
        "cross_reconstruction": 0.0,
        "latent_agreement": 0.0,
        "denoiser": "faithful",
        "n_channels": 128,
        "source_injection": False,
        "latent_scaling": "scalar",
        "label_dropout": 0.0,
        "condition_prob": 0.0,
        "condition_label_dropout": 0.0,
        "condition_noise": 0,
        "gaussian_residual": False,
        "prediction": "epsilon",
        "generation_depth": "label",
        "protein_likelihood": "nb",
    },
}

#: Training options of each configuration (``SCDX.train``, ``train_autoencoder``,
#: ``train_diffusion``). ``None`` epochs: chosen from the number of cells (see ``SCDX.train``).
#: The reference trains the autoencoder 300 epochs without early stopping, its dispersions with
#: the other parameters (``dispersion_lr=None``), and the diffusion 800k steps at learning rate
#: 1e-4 without validation.
TRAIN_CONFIGURATIONS: dict[str, dict] = {
    "scdx": {
        "max_epochs": None,
        "early_stopping": True,
        "dispersion_lr": 0.1,
        "max_steps_diffusion": 4000,
        "diffusion_lr": 1e-3,
        "diffusion_early_stopping": False,
    },
    "reference": {
        "max_epochs": 300,
        "early_stopping": False,
        "dispersion_lr": None,
        "max_steps_diffusion": 800_000,
        "diffusion_lr": 1e-4,
        "diffusion_early_stopping": False,
    },
}


def default_max_epochs(n_cells: int) -> int:
    """Autoencoder epochs of the ``"scdx"`` configuration: about 200,000 cell passes, 25-300.

    Small data sets get more epochs (300 at 667 cells or fewer), large ones fewer (25 from
    8,000 cells on), so that the default budget stays close to the number of optimiser steps
    the benchmarks measured; early stopping ends most runs sooner.
    """
    return int(min(300, max(25, round(200_000 / max(int(n_cells), 1)))))
