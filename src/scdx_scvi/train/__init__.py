"""Training of the diffusion stage (stage 1 uses :class:`scvi.train.TrainingPlan`)."""

from ._diffusion_plan import LatentDiffusionTrainingPlan
from ._latent_data import LatentDataModule

__all__ = ["LatentDataModule", "LatentDiffusionTrainingPlan"]
