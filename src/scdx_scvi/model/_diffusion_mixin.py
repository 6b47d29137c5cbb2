"""Stage 2 of SCDX on the model side: diffusion training and generation of paired cells."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS

from scdx_scvi._compat import _SETUP_ARGS_KEY, devices_dsp
from scdx_scvi._constants import MODULE_KEYS
from scdx_scvi.data import stack_rows
from scdx_scvi.data._sparse import scipy_csr
from scdx_scvi.diffusion import SAMPLERS
from scdx_scvi.module import TRAIN_CONFIGURATIONS
from scdx_scvi.train import (
    LatentDataModule,
    LatentDiffusionTrainingPlan,
    release_training_state,
)

from ._checks import check_int
from ._condition_timesteps import fit_condition_timesteps
from ._rows import RowBuffer
from ._sampling import (
    batch_code,
    check_diffusion_trained,
    generation_labels,
    label_categories,
    resolve_seed,
    seeded,
)
from ._translation_spread import fit_translation_spread

logger = logging.getLogger(__name__)

#: Fewest optimiser steps between two validation checks of :meth:`train_diffusion`.
VALIDATION_EVERY_STEPS = 25

#: Most values of one decoded chunk of :meth:`generate` by default (float32: 128 MiB): the
#: logits, probabilities and draws of a chunk are dense, three to four such blocks at a time.
_GENERATE_BLOCK_VALUES = 2**25

#: Samplers that draw new cells (not a point estimate, not a translator).
GENERATION_SAMPLERS = [
    name for name, cls in SAMPLERS.items() if not (cls.point_estimate or cls.zero_shot)
]


class LatentDiffusionMixin:
    """``train_diffusion`` and ``generate`` of :class:`~scdx_scvi.model.SCDX`."""

    _diffusion_training_plan_cls = LatentDiffusionTrainingPlan

    # ------------------------------------------------------------------ training

    @torch.no_grad()
    def _encode_all(self, batch_size: int | None = None) -> tuple[dict, ...]:
        """Latents, libraries, measured masks, label and batch codes of every registered cell."""
        module = self.module
        module.eval()
        keys = (MODULE_KEYS.Z, MODULE_KEYS.LIBRARY, MODULE_KEYS.OBSERVED)
        rows = RowBuffer(self.adata.n_obs)
        for tensors in self._make_data_loader(adata=self.adata, batch_size=batch_size):
            out = module.inference(**module._get_inference_input(tensors))
            rows.write({
                **{(key, m): out[key][m] for key in keys for m in self.modalities},
                "labels": tensors[REGISTRY_KEYS.LABELS_KEY].reshape(-1).long(),
                "batches": tensors[REGISTRY_KEYS.BATCH_KEY].reshape(-1).long(),
            })  # fmt: skip
        arrays = rows.result()
        z, library, observed = ({m: arrays[key, m] for m in self.modalities} for key in keys)
        library = {m: v.reshape(-1) for m, v in library.items()}
        return z, library, observed, arrays["labels"], arrays["batches"]

    @devices_dsp.dedent
    def train_diffusion(
        self,
        max_steps: int | None = None,
        batch_size: int = 128,
        lr: float | None = None,
        weight_decay: float = 1e-4,
        ema_decay: float = 0.9999,
        lr_decay: bool = True,
        early_stopping: bool | None = None,
        early_stopping_patience: int = 30,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the latent diffusion (stage 2) on the frozen autoencoder's latents.

        The latents of every cell are computed once (in minibatches, without gradients), scaled
        with statistics of the training cells, and the denoiser is trained on the autoencoder's
        train/validation split with the DDPM objective. As the reference: AdamW, learning rate
        decayed linearly to 0, weight decay 1e-4, batch 128, EMA 0.9999. The number of steps,
        the learning rate and early stopping follow the model's ``configuration``: the
        reference runs 800k steps at 1e-4 without validation; ``"scdx"`` runs 4,000 steps
        at 1e-3 (runs of thousands rather than hundreds of thousands of steps, in which the
        denoiser must learn to use the source for the learned translation), without early
        stopping: the validation loss of the denoiser rises after a few hundred steps while
        the generated cells still become more realistic (user guide). The depth models used
        by :meth:`generate` (see ``generation_depth``) are fitted on the training cells as
        well. With ``condition_noise`` (noisy conditions), the timestep at which each source
        modality enters the denoiser at translation is then chosen on the validation cells:
        the one whose translations correlate best with what was measured (user guide, "Noisy
        conditions"; the scores are in ``model.condition_timestep_scores_``). Last, the spread
        of sampled translations is calibrated on the same cells: one factor per direction on
        each sample's distance from the conditional mean, the one whose intervals cover the
        validation cells' targets closest to their levels (user guide, "Calibration of sampled
        translations"; ``model.translation_spread_scores_``). History:
        ``model.diffusion_history``.

        Parameters
        ----------
        max_steps
            Maximum number of optimiser steps (default: the configuration's).
        batch_size
            Cells per minibatch.
        lr
            AdamW learning rate (default: the configuration's; 1e-4 in the reference, 1e-3
            for ``"scdx"``).
        weight_decay
            AdamW weight decay.
        ema_decay
            Decay of the exponential moving average of the denoiser weights.
        lr_decay
            Decay the learning rate linearly to 0 over ``max_steps`` (the reference).
        early_stopping
            Stop when ``diffusion_loss_validation`` has not improved for
            ``early_stopping_patience`` validation checks; default: the configuration's (off for
            both). The validation loss is computed after every
            whole epoch that ends at least 25 optimiser steps after
            the previous check, so that on a few hundred cells (a few steps per epoch) the
            patience still spans hundreds of steps and noise in a small validation set does not
            stop the run early. Off under DDP.
        early_stopping_patience
            Validation checks without improvement before stopping (30: at least 750 steps).
        %(param_accelerator)s
        %(param_devices)s
        plan_kwargs
            Keyword arguments for :class:`~scdx_scvi.train.LatentDiffusionTrainingPlan`.
        **trainer_kwargs
            Keyword arguments for :class:`scvi.train.Trainer` (e.g. ``strategy="ddp"``: see
            :meth:`~scdx_scvi.model.SCDX.train` for multi-device training; each process then
            samples its share of the cells with scvi-tools'
            :class:`~scvi.dataloaders.BatchDistributedSampler`).
        """
        config = TRAIN_CONFIGURATIONS[self.configuration]
        max_steps = check_int(
            config["max_steps_diffusion"] if max_steps is None else max_steps, "max_steps"
        )
        lr = config["diffusion_lr"] if lr is None else lr
        if early_stopping is None:
            early_stopping = config["diffusion_early_stopping"]
        batch_size = check_int(batch_size, "batch_size")
        early_stopping_patience = check_int(early_stopping_patience, "early_stopping_patience")
        self._check_if_trained(warn=False, message="Train the autoencoder first.")
        z, library, observed, labels, batches = self._encode_all()
        train_idx = torch.as_tensor(self.train_indices)
        training = {m: train_idx[observed[m][train_idx]] for m in self.modalities}
        diffusion = self.module.diffusion
        diffusion.fit_scaling({m: v[training[m]] for m, v in z.items()})
        self.module.fit_library_prior(
            {m: v[training[m]] for m, v in library.items()},
            {m: labels[training[m]] for m in library},
            labels[train_idx],
            {m: v[training[m]] for m, v in z.items()},
            {  # every training cell's library sizes, NaN where it lacks the modality
                m: torch.where(observed[m][train_idx], v[train_idx].float(), torch.nan)
                for m, v in library.items()
                if not self.module.likelihoods[m].binary
            },
        )
        scaled = diffusion.scale(z)
        datamodule = LatentDataModule(
            scaled, labels, batches, observed, self.train_indices, self.validation_indices,
            self.test_indices, batch_size=batch_size,
        )  # fmt: skip
        plan = self._diffusion_training_plan_cls(
            diffusion,
            datamodule.unpack,
            freeze=self.module.freeze_autoencoder,
            **{
                "lr": lr,
                "weight_decay": weight_decay,
                "ema_decay": ema_decay,
                "lr_decay_steps": max_steps if lr_decay else None,
                **(plan_kwargs or {}),
            },
        )
        # early stopping needs a validation pass, i.e. at least one whole epoch
        steps_per_epoch = -(-datamodule.n_train // batch_size)
        early_stopping = early_stopping and datamodule.n_val > 0 and max_steps >= steps_per_epoch
        trainer_kwargs.setdefault("early_stopping_monitor", "diffusion_loss_validation")
        trainer_kwargs.setdefault("early_stopping_patience", early_stopping_patience)
        if datamodule.n_val:
            # at least one check in a run shorter than that (the history keeps its losses)
            every = -(-VALIDATION_EVERY_STEPS // steps_per_epoch)
            every = max(1, min(every, max_steps // steps_per_epoch))
            trainer_kwargs.setdefault("check_val_every_n_epoch", every)
        runner = self._train_runner_cls(
            self, training_plan=plan, data_splitter=datamodule, max_epochs=max_steps,
            max_steps=max_steps, accelerator=accelerator, devices=devices,
            early_stopping=early_stopping, **trainer_kwargs,
        )  # fmt: skip
        # The runner writes into ``history_`` (appending when ``is_trained_``, as for repeated
        # autoencoder runs): point it at the diffusion's history and restore the autoencoder's.
        autoencoder_state = self.history_, self.is_trained_
        self.history_ = self.diffusion_history_
        self.is_trained_ = self.diffusion_history_ is not None
        try:
            runner()
            steps = int(self.trainer.global_step)
            if steps:
                self.diffusion_history_ = self.history_
        finally:
            self.history_, self.is_trained_ = autoencoder_state
        release_training_state(self.trainer)
        self.module.eval()
        if not steps:
            raise RuntimeError(
                "`train_diffusion` ran no optimiser step (see `max_steps` and the trainer "
                "arguments), so the diffusion is not trained."
            )
        self.diffusion_steps_ = getattr(self, "diffusion_steps_", 0) + steps
        self.condition_timestep_scores_ = fit_condition_timesteps(self, self.validation_indices)
        self.translation_spread_scores_ = fit_translation_spread(self, self.validation_indices)
        self.is_diffusion_trained_ = True

    def _invalidate_diffusion(self) -> None:
        """Mark a trained diffusion stale: the autoencoder's latents are about to change."""
        if self.is_diffusion_trained_:
            warnings.warn(
                "Training the autoencoder again changes its latents, so the trained diffusion "
                "is stale: run `train_diffusion()` again before `generate` or translation.",
                UserWarning,
                stacklevel=3,
            )
            self.is_diffusion_trained_ = False

    @property
    def epochs_trained(self) -> dict[str, int]:
        """What training actually ran (early stopping included), summed over repeated calls.

        ``{"autoencoder": epochs of train_autoencoder, "diffusion": epochs of
        train_diffusion, "diffusion_steps": optimiser steps of train_diffusion}``; 0 for a
        stage that never trained. Epochs are counted from the histories (a last, partial
        epoch of the diffusion counts as one).
        """
        history = (self.history_ or {}) if self.is_trained_ else {}
        diffusion = self.diffusion_history_ or {}
        return {
            "autoencoder": len(history.get("reconstruction_loss_train", ())),
            "diffusion": len(diffusion.get("diffusion_loss_train", ())),
            "diffusion_steps": int(getattr(self, "diffusion_steps_", 0)),
        }

    @property
    def diffusion_history(self) -> dict[str, pd.DataFrame] | None:
        """Per-epoch losses of :meth:`train_diffusion`."""
        return self.diffusion_history_

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(
        self,
        n_cells: int | None = None,
        labels: Mapping[str, int] | Sequence[str] | None = None,
        batch: str | None = None,
        sampler: Literal["dpm++2m", "ddim", "ddpm"] = "dpm++2m",
        n_steps: int | None = None,
        guidance_scale: float = 1.0,
        seed: int | None = None,
        batch_size: int | None = None,
        clip_x0: float | Literal["auto"] | None = "auto",
        progress: bool = False,
    ) -> MuData:
        """Generate paired multi-omics cells, optionally of chosen cell types.

        Latents are sampled with the EMA denoiser, unscaled, decoded by the autoencoder and
        turned into observations: RNA and protein counts from the negative binomial, ATAC from
        the Bernoulli, at depths chosen by the model's ``generation_depth`` (by default the
        number of open peaks drawn given each cell's ATAC latent and the library sizes of a
        training cell of the label; the reference draws library sizes from a log-normal fitted
        per label on training cells). Work is done in chunks of ``batch_size`` cells and each
        chunk is stored sparse, so memory is bounded whatever ``n_cells`` is.

        Parameters
        ----------
        n_cells
            Number of cells (0 gives an empty MuData). Without ``labels``, labels are drawn
            with the training-cell proportions (conditional model).
        labels
            ``{"L5 IT": 300, "Astro": 100}`` or a list with one label per cell.
        batch
            Batch category to generate: the denoiser is conditioned on it when the model was
            built with ``diffusion_batch=True``, and the decoder decodes as this batch when the
            autoencoder is batch-conditioned (without ``batch``: the first batch).
        sampler
            ``"dpm++2m"`` (:class:`~scdx_scvi.diffusion.DPMSolverPP2MSampler`), ``"ddim"``
            (:class:`~scdx_scvi.diffusion.DDIMSampler`) or ``"ddpm"`` (ancestral, the
            reference's sampler, :class:`~scdx_scvi.diffusion.DDPMSampler`).
        n_steps
            Number of denoiser evaluations (default: the sampler's ``default_steps``).
        guidance_scale
            Classifier-free guidance ``w``: 1 is the plain conditional model, 0 the
            unconditional one, above 1 strengthens the label.
        seed
            Seed of all random draws (same seed, same cells); ``None`` draws a fresh seed.
        batch_size
            Cells per chunk. Default: 1,024, or fewer where a modality has more than 32,768
            features, so that one decoded chunk holds at most 2^25 values (128 MiB of float32;
            at 200,000 peaks, 167 cells).
        clip_x0
            Clamp the predicted clean latent to ``[-clip_x0, clip_x0]`` at every step. ``"auto"``
            clamps at 1 with ``latent_scaling="scalar"`` (the reference's ``clip_denoised``; its
            latents have an SD of 0.1) and not at all with ``"per_dim"``.
        progress
            Show a progress bar over the sampler steps.

        Returns
        -------
        MuData with one AnnData per modality (sparse CSR counts, float32; ATAC as 0/1), the
        training ``var_names``, and ``obs`` with the label (column named as ``labels_key``) of
        every cell.
        """
        check_diffusion_trained(self)
        if self.module.generation_depth == "training_cells" and not (
            self.module.training_depths.fitted()
        ):
            warnings.warn(
                "This model's diffusion was trained before the training cells' library sizes "
                "were kept, so generated library sizes come from the per-label log-normal (as "
                "with `generation_depth='latent_atac'`): run `train_diffusion()` again to keep "
                "them.",
                UserWarning,
                stacklevel=2,
            )
        if sampler not in GENERATION_SAMPLERS:
            why = " (it estimates a mean, it does not draw cells)" if sampler == "mean" else ""
            raise ValueError(
                f"`sampler` of `generate` must be one of {GENERATION_SAMPLERS}, got "
                f"{sampler!r}{why}."
            )
        n_steps = check_int(n_steps, "n_steps", optional=True)
        if batch_size is None:
            widest = max(self.module.n_features.values())
            batch_size = min(1024, max(1, _GENERATE_BLOCK_VALUES // widest))
        batch_size = check_int(batch_size, "batch_size")
        seed = resolve_seed(seed)
        categories = label_categories(self.registry_, self.module.n_labels)
        codes = generation_labels(labels, n_cells, categories, self.module.label_counts, seed)
        code = batch_code(batch, self.registry_, self._batch_conditioned)
        draw = self.module.diffusion.make_sampler(sampler, clip_x0)
        device = self.module.device
        chunks = {m: [] for m in self.modalities}
        with seeded(seed, device) as generator:
            for start in range(0, len(codes), batch_size):
                y = torch.as_tensor(codes[start : start + batch_size], device=device)
                counts = self.module.generate(
                    y, draw, batch=code, n_steps=n_steps, guidance_scale=guidance_scale,
                    generator=generator, progress=progress,
                )  # fmt: skip
                for m, values in counts.items():
                    chunks[m].append(scipy_csr(values))
        return self._generated_mudata(chunks, codes, categories, batch)

    @property
    def _batch_conditioned(self) -> bool:
        """Whether the denoiser or the decoder is conditioned on the batch."""
        return self.module.use_batch or self.module.diffusion.n_batch > 0

    def _generated_mudata(self, chunks, codes, categories, batch) -> MuData:
        n = len(codes)
        obs = pd.DataFrame(index=pd.Index([f"generated_{i}" for i in range(n)], dtype=str))
        setup_args = self.registry_[_SETUP_ARGS_KEY]
        if categories is not None:
            column = setup_args.get("labels_key") or "label"
            obs[column] = pd.Categorical([categories[c] for c in codes], categories=categories)
        if batch is not None:
            obs[setup_args.get("batch_key") or "batch"] = str(batch)
        mods = {}
        for m, mod in self._modality_names.items():
            var = pd.DataFrame(index=pd.Index(self.feature_names_[m], dtype=str))
            x = stack_rows(chunks[m], n_cols=len(var))
            mods[mod] = AnnData(X=x, obs=obs.copy(), var=var)
        mdata = MuData(mods)
        mdata.obs = obs.loc[mdata.obs_names]
        return mdata
