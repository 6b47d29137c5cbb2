"""Training plan of the diffusion stage: optimises the denoiser, the autoencoder stays frozen."""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl
import torch

from scdx_scvi.module import LatentDiffusion

from ._optimizer import adamw


class LatentDiffusionTrainingPlan(pl.LightningModule):
    """Lightning module that trains a :class:`~scdx_scvi.module.LatentDiffusion` on latents.

    The plan sees the diffusion only; the autoencoder that made the latents is frozen through
    the ``freeze`` hook for the whole fit (``freeze(True)`` at the start, ``freeze(False)`` at
    the end). After every optimiser step the EMA denoiser is updated; validation evaluates the
    EMA denoiser (the weights that sampling uses and ``save`` stores) with a fixed random
    stream, so the validation loss compares epochs on the same noise.

    Logged per epoch: ``diffusion_loss_{train,validation}`` and
    ``diffusion_loss_<modality>_{train,validation}`` (the per-modality MSE), averaged over the
    cells of all processes when several train together (``strategy="ddp"``).

    Parameters
    ----------
    diffusion
        The latent diffusion to train.
    unpack
        Function splitting a minibatch into ``(latents, labels, batch, observed)``.
    freeze
        ``freeze(frozen: bool)`` freezes (``True``) or releases (``False``) the autoencoder, e.g.
        :meth:`~scdx_scvi.module.SCDXModule.freeze_autoencoder`; ``None`` if there is nothing to
        freeze.
    lr
        AdamW learning rate (1e-4 in the reference).
    weight_decay
        AdamW weight decay (1e-4 in the reference).
    ema_decay
        EMA decay (0.9999 in the reference, with a warm-up, see
        :meth:`~scdx_scvi.module.LatentDiffusion.update_ema`).
    lr_decay_steps
        Decay the learning rate linearly to 0 over this many steps, as the reference does over
        its whole run; ``None`` keeps it constant.
    """

    def __init__(
        self,
        diffusion: LatentDiffusion,
        unpack: Callable,
        freeze: Callable[[bool], None] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        ema_decay: float = 0.9999,
        lr_decay_steps: int | None = None,
    ):
        super().__init__()
        if lr_decay_steps is not None and lr_decay_steps < 1:
            raise ValueError(f"`lr_decay_steps` must be at least 1 or None, got {lr_decay_steps}.")
        self.diffusion = diffusion
        self.unpack = unpack
        self.freeze = freeze
        self.lr = lr
        self.weight_decay = weight_decay
        self.ema_decay = ema_decay
        self.lr_decay_steps = lr_decay_steps

    def setup(self, stage: str) -> None:
        """Make the denoiser trainable (the autoencoder stage freezes it).

        This runs before a multi-process strategy wraps the plan, which only synchronises the
        gradients of parameters that require them at that point.
        """
        self.diffusion.denoiser.requires_grad_(True)

    def on_fit_start(self) -> None:
        """Freeze the autoencoder; put the diffusion in training mode (label dropout).

        Lightning keeps the modes it finds, and encoding the latents leaves the diffusion in
        eval mode, in which :meth:`~scdx_scvi.module.LatentDiffusion.loss` drops no label.
        The EMA weights never take gradients.
        """
        if self.freeze is not None:
            self.freeze(True)
        self.diffusion.train()
        self.diffusion.ema.requires_grad_(False)

    def on_fit_end(self) -> None:
        """Release the autoencoder."""
        if self.freeze is not None:
            self.freeze(False)

    def _step(self, minibatch, split: str, use_ema: bool, generator=None) -> torch.Tensor:
        latents, labels, batch, observed = self.unpack(minibatch)
        loss, mse, target = self.diffusion.loss(
            latents, labels, batch, observed=observed, use_ema=use_ema, generator=generator
        )
        # epoch means over the cells of every process (``sync_dist``: a no-op on one process)
        log = {"on_epoch": True, "on_step": False, "sync_dist": True}
        self.log(f"diffusion_loss_{split}", loss.mean(), batch_size=loss.shape[0],
                 prog_bar=split == "train", **log)  # fmt: skip
        for m, value in mse.items():
            n_m = int(target[m].sum())
            if n_m:  # mean over the cells where the modality was denoised
                self.log(f"diffusion_loss_{m}_{split}", value[target[m]].mean(), batch_size=n_m,
                         **log)  # fmt: skip
        return loss.mean()

    def training_step(self, minibatch, batch_idx: int) -> torch.Tensor:
        """One DDPM step on a minibatch of training latents."""
        return self._step(minibatch, "train", use_ema=False)

    def on_train_batch_end(self, outputs, minibatch, batch_idx: int) -> None:
        """Update the EMA weights."""
        self.diffusion.update_ema(self.ema_decay)

    def validation_step(self, minibatch, batch_idx: int) -> torch.Tensor:
        """DDPM loss of the EMA denoiser on validation latents (fixed noise per minibatch)."""
        device = next(iter(minibatch)).device
        generator = torch.Generator(device=device).manual_seed(batch_idx)
        return self._step(minibatch, "validation", use_ema=True, generator=generator)

    def configure_optimizers(self):
        """AdamW on the denoiser only, with an optional linear decay of the learning rate."""
        optimizer = adamw(
            self.diffusion.denoiser.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        if self.lr_decay_steps is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0, end_factor=0.0, total_iters=self.lr_decay_steps
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
