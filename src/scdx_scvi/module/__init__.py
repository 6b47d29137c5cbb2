"""PyTorch modules (the scvi-tools ``BaseModuleClass`` side of SCDX)."""

from ._depth import LatentDepth, TrainingDepths
from ._latent_diffusion import LatentDiffusion
from ._likelihoods import BernoulliLikelihood, CountLikelihood, CountMixtureLikelihood
from ._presets import (
    ATLAS_PEAKS,
    MODEL_CONFIGURATIONS,
    PRESETS,
    TRAIN_CONFIGURATIONS,
    AutoencoderPreset,
    atlas_widths,
    default_max_epochs,
)
from ._scdx_module import SCDXModule

__all__ = [
    "ATLAS_PEAKS",
    "MODEL_CONFIGURATIONS",
    "PRESETS",
    "TRAIN_CONFIGURATIONS",
    "AutoencoderPreset",
    "BernoulliLikelihood",
    "CountLikelihood",
    "CountMixtureLikelihood",
    "LatentDepth",
    "LatentDiffusion",
    "SCDXModule",
    "TrainingDepths",
    "atlas_widths",
    "default_max_epochs",
]
