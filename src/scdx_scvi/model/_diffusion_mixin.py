"""Stage 2 of SCDX on the model side: diffusion training and generation of paired cells."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.train import TrainRunner

from scdx_scvi._compat import (
    _FIELD_REGISTRIES_KEY,
    _SETUP_ARGS_KEY,
    _STATE_REGISTRY_KEY,
    devices_dsp,
)
from scdx_scvi._constants import MODULE_KEYS
from scdx_scvi.diffusion import classifier_free_guidance, get_sampler, sample_noise
from scdx_scvi.train import LatentDataModule, LatentDiffusionTrainingPlan

logger = logging.getLogger(__name__)

#: Default number of denoiser evaluations of each sampler in :meth:`generate`.
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 100, "dpm++2m": 25}


def stack_rows(blocks: list[sparse.csr_matrix]) -> sparse.csr_matrix:
    """Stack CSR row blocks into one matrix, releasing each block's arrays as they are copied.

    Equal to ``scipy.sparse.vstack(blocks, format="csr")``, but the data and index arrays are
    concatenated one after the other and the blocks' own arrays dropped in between, so the
    peak is about 1.5 times the result instead of 2 times. The blocks are emptied.
    """
    n_cols = blocks[0].shape[1]
    offsets = np.cumsum([0] + [b.nnz for b in blocks])
    indptr = np.concatenate(
        [[0]] + [b.indptr[1:].astype(np.int64) + o for b, o in zip(blocks, offsets, strict=False)]
    )
    n_rows = sum(b.shape[0] for b in blocks)
    data = np.concatenate([b.data for b in blocks])
    for b in blocks:
        b.data = np.empty(0, data.dtype)  # a view would keep the block's buffer alive
    index_dtype = np.int32 if offsets[-1] < np.iinfo(np.int32).max else np.int64
    indices = np.concatenate([b.indices for b in blocks]).astype(index_dtype, copy=False)
    blocks.clear()
    return sparse.csr_matrix((data, indices, indptr.astype(index_dtype)), shape=(n_rows, n_cols))


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
        parts = {key: {m: [] for m in self.modalities} for key in keys}
        labels, batches = [], []
        loader = self._make_data_loader(adata=self.adata, batch_size=batch_size)
        for tensors in loader:
            out = module.inference(**module._get_inference_input(tensors))
            for key in keys:
                for m in self.modalities:
                    parts[key][m].append(out[key][m].cpu())
            labels.append(tensors[REGISTRY_KEYS.LABELS_KEY].reshape(-1).long())
            batches.append(tensors[REGISTRY_KEYS.BATCH_KEY].reshape(-1).long())
        z, library, observed = ({m: torch.cat(v) for m, v in parts[key].items()} for key in keys)
        library = {m: v.reshape(-1) for m, v in library.items() if not module.likelihoods[m].binary}
        return z, library, observed, torch.cat(labels), torch.cat(batches)

    @devices_dsp.dedent
    def train_diffusion(
        self,
        max_steps: int = 100_000,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        ema_decay: float = 0.9999,
        lr_decay: bool = True,
        early_stopping: bool = True,
        early_stopping_patience: int = 30,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the latent diffusion (stage 2) on the frozen autoencoder's latents.

        The latents of every cell are computed once (in minibatches, without gradients), scaled
        with statistics of the training cells, and the denoiser is trained on the autoencoder's
        train/validation split with the DDPM objective. Defaults are the reference's (AdamW,
        learning rate decayed linearly to 0, weight decay 1e-4, batch 128, EMA 0.9999), except
        for the number of steps (the reference runs 800k steps and stops by hand; here at most
        ``max_steps`` with early stopping on the EMA denoiser's validation loss) and the
        learning rate (1e-3 instead of 1e-4: runs of thousands rather than hundreds of
        thousands of steps, in which the denoiser must learn to use the source for the
        learned translation). The
        per-label library-size priors used by :meth:`generate` are fitted on the training
        cells as well. History: ``model.diffusion_history``.

        Parameters
        ----------
        max_steps
            Maximum number of optimiser steps.
        batch_size
            Cells per minibatch.
        lr
            AdamW learning rate (1e-4 in the reference).
        weight_decay
            AdamW weight decay.
        ema_decay
            Decay of the exponential moving average of the denoiser weights.
        lr_decay
            Decay the learning rate linearly to 0 over ``max_steps`` (the reference).
        early_stopping
            Stop when ``diffusion_loss_validation`` has not improved for
            ``early_stopping_patience`` epochs (passes over the training cells).
        early_stopping_patience
            Epochs without improvement before stopping.
        %(param_accelerator)s
        %(param_devices)s
        plan_kwargs
            Keyword arguments for :class:`~scdx_scvi.train.LatentDiffusionTrainingPlan`.
        **trainer_kwargs
            Keyword arguments for :class:`scvi.train.Trainer`.
        """
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
        )
        scaled = diffusion.scale(z)
        datamodule = LatentDataModule(
            scaled, labels, batches, observed, self.train_indices, self.validation_indices,
            self.test_indices, batch_size=batch_size,
        )  # fmt: skip
        plan = self._diffusion_training_plan_cls(
            self.module,
            datamodule.unpack,
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
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        runner = TrainRunner(
            self, training_plan=plan, data_splitter=datamodule, max_epochs=max_steps,
            max_steps=max_steps, accelerator=accelerator, devices=devices,
            early_stopping=early_stopping, **trainer_kwargs,
        )  # fmt: skip
        # The runner writes into ``history_``: keep the autoencoder's history apart.
        autoencoder_history, self.history_, self.is_trained_ = self.history_, None, False
        try:
            runner()
            self.diffusion_history_ = self.history_
        finally:
            self.history_, self.is_trained_ = autoencoder_history, True
        self.module.eval()
        self.is_diffusion_trained_ = True

    @property
    def diffusion_history(self) -> dict[str, pd.DataFrame] | None:
        """Per-epoch losses of :meth:`train_diffusion`."""
        return self.diffusion_history_

    # ------------------------------------------------------------------ generation

    def _label_codes(
        self, labels: Mapping[str, int] | Sequence[str] | None, n_cells: int | None, seed: int
    ) -> tuple[np.ndarray, list | None]:
        categories = self._categories(REGISTRY_KEYS.LABELS_KEY)
        conditional = self.module.n_labels > 0
        if labels is None:
            if n_cells is None:
                raise ValueError("Give `n_cells`, or `labels` as a dict {label: n_cells} or list.")
            if not conditional:
                return np.zeros(n_cells, dtype=int), None
            # as the reference: labels drawn with the proportions of the training cells
            counts = self.module.label_counts.cpu().double().numpy()
            rng = np.random.default_rng(seed)
            return rng.choice(len(counts), size=n_cells, p=counts / counts.sum()), categories
        if not conditional:
            raise ValueError(
                "This model's diffusion is unconditional (no `labels_key` at setup): "
                "generate with `n_cells` only."
            )
        if isinstance(labels, Mapping):
            names = [name for name, count in labels.items() for _ in range(int(count))]
        elif isinstance(labels, str):
            raise TypeError("`labels` must be a dict {label: n_cells} or a list of labels.")
        else:
            names = list(labels)
        unknown = sorted({str(n) for n in names} - {str(c) for c in categories})
        if unknown:
            raise ValueError(f"Unknown label(s) {unknown}; the model knows {categories}.")
        lookup = {str(c): i for i, c in enumerate(categories)}
        if n_cells is not None and n_cells != len(names):
            raise ValueError(f"`n_cells`={n_cells} but `labels` asks for {len(names)} cells.")
        codes = np.array([lookup[str(n)] for n in names], dtype=int)
        self._check_trained_labels(codes, categories)
        return codes, categories

    def _check_trained_labels(self, codes: np.ndarray, categories: list) -> None:
        """Refuse labels that no training cell had: the model never learned them."""
        counts = self.module.label_counts.cpu().numpy()
        untrained = sorted({str(categories[c]) for c in np.unique(codes) if counts[c] == 0})
        if untrained:
            raise ValueError(
                f"No training cell has label(s) {untrained} (they are categories of the "
                "labels column only), so the model never learned them: leave them out, or "
                "train with cells of these types."
            )

    def _categories(self, registry_key: str) -> list:
        """Categories of a registered categorical field, read from the saved registry."""
        state = self.registry_[_FIELD_REGISTRIES_KEY][registry_key][_STATE_REGISTRY_KEY]
        return list(state["categorical_mapping"])

    @torch.no_grad()
    def generate(
        self,
        n_cells: int | None = None,
        labels: Mapping[str, int] | Sequence[str] | None = None,
        batch: str | None = None,
        sampler: str = "dpm++2m",
        n_steps: int | None = None,
        guidance_scale: float = 1.0,
        seed: int | None = None,
        batch_size: int = 1024,
        clip_x0: float | Literal["auto"] | None = "auto",
        progress: bool = False,
    ) -> MuData:
        """Generate paired multi-omics cells, optionally of chosen cell types.

        Latents are sampled with the EMA denoiser, unscaled, decoded by the autoencoder and
        turned into observations: RNA and protein counts from the negative binomial with a
        library size drawn from the log-normal fitted per label on training cells (as the
        reference does), ATAC from the Bernoulli. Work is done in chunks of ``batch_size``
        cells and each chunk is stored sparse, so memory is bounded whatever ``n_cells`` is.

        Parameters
        ----------
        n_cells
            Number of cells. Without ``labels``, labels are drawn with the training-cell
            proportions (conditional model).
        labels
            ``{"L5 IT": 300, "Astro": 100}`` or a list with one label per cell.
        batch
            Batch category to generate: the denoiser is conditioned on it when the model was
            built with ``diffusion_batch=True``, and the decoder decodes as this batch when the
            autoencoder is batch-conditioned (without ``batch``: the first batch).
        sampler
            ``"dpm++2m"`` (DPM-Solver++ 2M, default 25 steps), ``"ddim"`` (100 steps) or
            ``"ddpm"`` (ancestral, 1000 steps, the reference's sampler).
        n_steps
            Number of denoiser evaluations (default: see ``sampler``).
        guidance_scale
            Classifier-free guidance ``w``: 1 is the plain conditional model, 0 the
            unconditional one, above 1 strengthens the label.
        seed
            Seed of all random draws (same seed, same cells); ``None`` draws a fresh seed.
        batch_size
            Cells per chunk.
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
        if not getattr(self, "is_diffusion_trained_", False):
            raise RuntimeError("Train the diffusion first: `model.train()` or `train_diffusion()`.")
        seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)
        codes, categories = self._label_codes(labels, n_cells, seed)
        diffusion_batch, decoder_batch = self._generation_batch(batch)
        device = self.module.device
        diffusion = self.module.diffusion
        draw = get_sampler(sampler, clip_x0=self._clip_x0(clip_x0))
        n_steps = n_steps or DEFAULT_STEPS[sampler]
        generator = torch.Generator(device=device).manual_seed(seed)
        dims = {m: diffusion.denoiser.latent_dims[m] for m in self.modalities}
        chunks = {m: [] for m in self.modalities}
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + 1)
            for start in range(0, len(codes), batch_size):
                y = torch.as_tensor(codes[start : start + batch_size], device=device)
                cond = torch.stack([y, torch.full_like(y, diffusion_batch)], dim=1)
                null = torch.tensor([diffusion.n_labels, diffusion.n_batch], device=device)
                eps_fn = classifier_free_guidance(
                    diffusion.labelled_denoiser(), cond, null, guidance_scale
                )
                noise = sample_noise(dims, len(y), generator)
                x0 = draw(eps_fn, noise, diffusion.schedule, n_steps, generator, progress=progress)
                batch_index = torch.full((len(y), 1), decoder_batch, device=device)
                counts = self.module.sample_counts(diffusion.unscale(x0), y, batch_index)
                for m, values in counts.items():
                    chunks[m].append(sparse.csr_matrix(values.cpu().numpy(), dtype=np.float32))
        return self._generated_mudata(chunks, codes, categories, batch)

    def _clip_x0(self, clip_x0: float | str | None) -> float | None:
        """Resolve ``clip_x0="auto"``: 1 for the reference's scalar scaling, else none."""
        if clip_x0 == "auto":
            return 1.0 if self.module.diffusion.latent_scaling == "scalar" else None
        return clip_x0

    def _generation_batch(self, batch: str | None) -> tuple[int, int]:
        """Batch codes for the denoiser and for the autoencoder's decoder.

        Without ``batch``, the denoiser gets its null batch and a batch-conditioned decoder
        decodes as the first batch.
        """
        n_batch = self.module.diffusion.n_batch
        if batch is None:
            return n_batch, 0
        if n_batch == 0 and not self.module.use_batch:
            raise ValueError(
                "This model is not conditioned on the batch: register `batch_key` and use "
                "`use_batch=True` (decoder) or `diffusion_batch=True` (denoiser)."
            )
        categories = [str(c) for c in self._categories(REGISTRY_KEYS.BATCH_KEY)]
        if str(batch) not in categories:
            raise ValueError(f"Unknown batch {batch!r}; the model knows {categories}.")
        code = categories.index(str(batch))
        return (code if n_batch else 0), code

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
            x = stack_rows(chunks[m]) if chunks[m] else sparse.csr_matrix((0, 0))
            var = pd.DataFrame(index=pd.Index(self.feature_names_[m], dtype=str))
            mods[mod] = AnnData(X=x, obs=obs.copy(), var=var)
        mdata = MuData(mods)
        mdata.obs = obs.loc[mdata.obs_names]
        return mdata
