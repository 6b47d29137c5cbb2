"""Early stopping per modality: each modality's autoencoder stops when its own loss does.

The validation reconstruction loss that stage 1 stops on is a sum over modalities, and the
modality with the most features sets it: with 19,521 genes beside 49 proteins, the RNA part
stops improving while the protein part still does. :class:`ModalityEarlyStopping` watches
``reconstruction_loss_<modality>_validation`` of every modality instead. When one has not
improved for ``patience`` epochs, that modality's encoder, decoder and likelihood are frozen
(no gradient, evaluation mode) and the others train on, the cross terms included (they now
read the frozen modality's latent or decoder as fixed); training ends when every modality is
frozen, or at ``max_epochs``.
"""

from __future__ import annotations

import logging
import math

import lightning.pytorch as pl
import torch
from scvi.model._utils import use_distributed_sampler

logger = logging.getLogger(__name__)


class ModalityEarlyStopping(pl.Callback):
    """Freeze each modality's autoencoder once its validation reconstruction stops improving.

    Parameters
    ----------
    modalities
        The modalities to watch (the module's ``encoders``, ``decoders`` and ``likelihoods``
        keys).
    patience
        Validation epochs without improvement before a modality is frozen.
    """

    def __init__(self, modalities: list[str], patience: int) -> None:
        super().__init__()
        self.modalities = list(modalities)
        self.patience = patience
        self.best = dict.fromkeys(self.modalities, math.inf)
        self.wait = dict.fromkeys(self.modalities, 0)
        self.watched: set[str] = set()
        #: The epoch (0-based) after which each frozen modality stopped training.
        self.stopped_epoch: dict[str, int] = {}

    @staticmethod
    def _parts(pl_module: pl.LightningModule, modality: str) -> list[torch.nn.Module]:
        module = pl_module.module
        return [module.encoders[modality], module.decoders[modality], module.likelihoods[modality]]

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Count the epochs without improvement of every watched modality; freeze as due."""
        if trainer.sanity_checking:
            return
        for m in self.modalities:
            if m in self.stopped_epoch:
                continue
            value = trainer.callback_metrics.get(f"reconstruction_loss_{m}_validation")
            if value is None or not torch.isfinite(value):
                continue  # not logged (no validation cells): not watched
            self.watched.add(m)
            if float(value) < self.best[m]:
                self.best[m], self.wait[m] = float(value), 0
                continue
            self.wait[m] += 1
            if self.wait[m] >= self.patience:
                self.stopped_epoch[m] = trainer.current_epoch
                for part in self._parts(pl_module, m):
                    part.requires_grad_(False)
                    part.eval()
                logger.info(
                    "%s: validation reconstruction did not improve for %d epochs; frozen after "
                    "epoch %d (best %.4f)", m, self.patience, trainer.current_epoch, self.best[m],
                )  # fmt: skip
        if self.watched and self.watched <= set(self.stopped_epoch):
            trainer.should_stop = True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keep the frozen modalities in evaluation mode (Lightning sets training mode)."""
        for m in self.stopped_epoch:
            for part in self._parts(pl_module, m):
                part.eval()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Hand the autoencoder back trainable, as after a stage without this callback."""
        for m in self.stopped_epoch:
            for part in self._parts(pl_module, m):
                part.requires_grad_(True)


def early_stopping_callbacks(
    early_stopping: bool | str, modalities: list[str], patience: int, trainer_kwargs: dict
) -> bool:
    """Resolve stage 1's ``early_stopping`` into scvi-tools' flag, adding callbacks as needed.

    ``True`` and ``False`` go to scvi-tools' trainer as they are; ``"per_modality"`` turns its
    early stopping off and adds a :class:`ModalityEarlyStopping` to a copy of
    ``trainer_kwargs["callbacks"]`` (none under DDP, where scvi-tools turns early stopping off
    too: frozen parameters would leave the processes' gradients unmatched).
    """
    if isinstance(early_stopping, bool):
        return early_stopping
    if early_stopping != "per_modality":
        raise ValueError(
            f"`early_stopping` must be True, False or 'per_modality', not {early_stopping!r}."
        )
    if not use_distributed_sampler(trainer_kwargs.get("strategy")):
        callback = ModalityEarlyStopping(modalities, patience)
        trainer_kwargs["callbacks"] = [*trainer_kwargs.get("callbacks", []), callback]
    return False
