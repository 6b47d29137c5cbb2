"""Training plan of the diffusion stage: optimises the denoiser, the autoencoder stays frozen."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from scdx_scvi.module import SCDXModule


class LatentDiffusionTrainingPlan(pl.LightningModule):
    """Lightning module that trains :attr:`SCDXModule.diffusion` on minibatches of latents.

    The autoencoder is frozen (``requires_grad=False``, eval mode) for the whole fit and
    unfrozen afterwards. After every optimiser step the EMA denoiser is updated; validation
    evaluates the EMA denoiser (the weights that sampling uses and ``save`` stores) with a
    fixed random stream, so the validation loss compares epochs on the same noise.

    Logged per epoch: ``diffusion_loss_{train,validation}`` and
    ``diffusion_loss_<modality>_{train,validation}`` (the per-modality MSE).

    Parameters
    ----------
    module
        The SCDX module.
    unpack
        Function splitting a minibatch into ``(latents, labels, batch)``.
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
        module: SCDXModule,
        unpack,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        ema_decay: float = 0.9999,
        lr_decay_steps: int | None = None,
    ):
        super().__init__()
        self.module = module
        self.unpack = unpack
        self.lr = lr
        self.weight_decay = weight_decay
        self.ema_decay = ema_decay
        self.lr_decay_steps = lr_decay_steps

    def _freeze_autoencoder(self, frozen: bool) -> None:
        for part in self.module.autoencoder:
            part.requires_grad_(not frozen)
            if frozen:
                part.eval()
        self.module.diffusion.ema.requires_grad_(False)

    def on_fit_start(self) -> None:
        """Freeze the autoencoder."""
        self._freeze_autoencoder(True)

    def on_train_epoch_start(self) -> None:
        """Keep the frozen autoencoder in eval mode (Lightning sets everything to train)."""
        for part in self.module.autoencoder:
            part.eval()

    def on_fit_end(self) -> None:
        """Make the autoencoder trainable again."""
        self._freeze_autoencoder(False)

    def _step(self, minibatch, split: str, use_ema: bool, generator=None) -> torch.Tensor:
        latents, labels, batch, observed = self.unpack(minibatch)
        loss, mse, target = self.module.diffusion.loss(
            latents, labels, batch, observed=observed, use_ema=use_ema, generator=generator
        )
        n = loss.shape[0]
        self.log(f"diffusion_loss_{split}", loss.mean(), on_epoch=True, on_step=False,
                 batch_size=n, prog_bar=split == "train")  # fmt: skip
        for m, value in mse.items():
            n_m = int(target[m].sum())
            if n_m:  # mean over the cells where the modality was denoised
                self.log(f"diffusion_loss_{m}_{split}", value[target[m]].mean(), on_epoch=True,
                         on_step=False, batch_size=n_m)  # fmt: skip
        return loss.mean()

    def training_step(self, minibatch, batch_idx: int) -> torch.Tensor:
        """One DDPM step on a minibatch of training latents."""
        return self._step(minibatch, "train", use_ema=False)

    def on_train_batch_end(self, outputs, minibatch, batch_idx: int) -> None:
        """Update the EMA weights."""
        self.module.diffusion.update_ema(self.ema_decay)

    def validation_step(self, minibatch, batch_idx: int) -> torch.Tensor:
        """DDPM loss of the EMA denoiser on validation latents (fixed noise per minibatch)."""
        device = next(iter(minibatch)).device
        generator = torch.Generator(device=device).manual_seed(batch_idx)
        return self._step(minibatch, "validation", use_ema=True, generator=generator)

    def configure_optimizers(self):
        """AdamW on the denoiser only, with an optional linear decay of the learning rate."""
        optimizer = torch.optim.AdamW(
            self.module.diffusion.denoiser.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        if not self.lr_decay_steps:
            return optimizer
        total = self.lr_decay_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(0.0, 1.0 - step / total)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
