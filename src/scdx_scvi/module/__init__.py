"""PyTorch modules (the scvi-tools ``BaseModuleClass`` side of SCDX)."""

from ._latent_diffusion import LatentDiffusion
from ._likelihoods import BernoulliLikelihood, CountLikelihood
from ._presets import PRESETS, AutoencoderPreset
from ._scdx_module import SCDXModule

__all__ = [
    "PRESETS",
    "AutoencoderPreset",
    "BernoulliLikelihood",
    "CountLikelihood",
    "LatentDiffusion",
    "SCDXModule",
]
