from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from scdx_scvi.module import LatentDiffusion
from scdx_scvi.train import LatentDataModule, LatentDiffusionTrainingPlan

DIMS = {"rna": 4, "atac": 3}


class RecordingPlan(LatentDiffusionTrainingPlan):
    """Records the diffusion's mode and the learning rate at every training step."""

    def training_step(self, minibatch, batch_idx):
        self.modes.append(self.diffusion.training)
        self.lrs.append(self.optimizers().param_groups[0]["lr"])
        return super().training_step(minibatch, batch_idx)


def _fit(max_steps=4, lr_decay_steps=4, n=32):
    torch.manual_seed(0)
    diffusion = LatentDiffusion(DIMS, n_labels=2, n_channels=8).eval()  # as after encoding
    latents = {m: torch.randn(n, d) for m, d in DIMS.items()}
    data = LatentDataModule(
        latents, torch.arange(n) % 2, torch.zeros(n), None, range(24), range(24, n), None, 8
    )
    calls = []
    plan = RecordingPlan(
        diffusion, data.unpack, freeze=calls.append, lr=1e-3, lr_decay_steps=lr_decay_steps
    )
    plan.modes, plan.lrs = [], []
    trainer = pl.Trainer(
        max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(plan, data)
    return diffusion, plan, calls, trainer


def test_plan_trains_the_denoiser_in_training_mode_with_the_autoencoder_frozen():
    diffusion, plan, calls, trainer = _fit()
    assert calls == [True, False]  # frozen for the fit, released after it
    assert plan.modes == [True] * 4  # label dropout is active
    assert int(diffusion.ema_updates) == trainer.global_step == 4
    assert not any(p.requires_grad for p in diffusion.ema.parameters())
    live = dict(diffusion.denoiser.named_parameters())
    assert any(not torch.equal(p, live[k]) for k, p in diffusion.ema.named_parameters())
    assert "diffusion_loss_validation" in trainer.callback_metrics


def test_learning_rate_decays_linearly_to_zero():
    _, plan, _, _ = _fit(max_steps=4, lr_decay_steps=4)
    torch.testing.assert_close(plan.lrs, [1e-3, 7.5e-4, 5e-4, 2.5e-4])
    _, constant, _, _ = _fit(max_steps=3, lr_decay_steps=None)
    assert constant.lrs == [1e-3] * 3
    with pytest.raises(ValueError, match="lr_decay_steps"):
        LatentDiffusionTrainingPlan(LatentDiffusion(DIMS, n_channels=8), None, lr_decay_steps=0)
