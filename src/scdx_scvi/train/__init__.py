"""Training: the optimisers (stage 1 for scvi-tools' TrainingPlan) and the diffusion stage."""

from ._diffusion_plan import LatentDiffusionTrainingPlan
from ._latent_data import LatentDataModule
from ._memory import FreedMemory, freed_memory_policy, retained_freed_memory
from ._modality_stopping import ModalityEarlyStopping
from ._optimizer import adamw, autoencoder_optimizer, release_training_state

__all__ = [
    "FreedMemory",
    "LatentDataModule",
    "LatentDiffusionTrainingPlan",
    "ModalityEarlyStopping",
    "adamw",
    "autoencoder_optimizer",
    "freed_memory_policy",
    "release_training_state",
    "retained_freed_memory",
]
