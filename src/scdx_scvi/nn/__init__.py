"""Neural-network building blocks."""

from ._dca import DualCrossAttention, FeatureCrossAttention
from ._denoiser import AttentionSite, DCAUNet, flatten_attention, timestep_embedding
from ._mlp import MLP

__all__ = [
    "MLP",
    "AttentionSite",
    "DCAUNet",
    "DualCrossAttention",
    "FeatureCrossAttention",
    "flatten_attention",
    "timestep_embedding",
]
