"""Training: the stage-1 optimiser (for scvi-tools' TrainingPlan) and the diffusion stage."""

from ._diffusion_plan import LatentDiffusionTrainingPlan
from ._latent_data import LatentDataModule
from ._optimizer import autoencoder_optimizer

__all__ = ["LatentDataModule", "LatentDiffusionTrainingPlan", "autoencoder_optimizer"]
