"""A Lightning data module over precomputed latents (stage 2 trains on latents, not counts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from scvi.dataloaders import BatchDistributedSampler
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)


class LatentDataModule(pl.LightningDataModule):
    """Minibatches of latents, labels, batches and measured-modality masks for the diffusion.

    The split is given (the autoencoder's), and the module exposes ``train_idx``, ``val_idx``
    and ``test_idx`` like :class:`scvi.dataloaders.DataSplitter`, so scvi-tools' train runner
    keeps the model's indices.

    When the trainer runs several processes (``strategy="ddp"``), each process loads its own
    share of the training and validation cells with scvi-tools'
    :class:`~scvi.dataloaders.BatchDistributedSampler` (``batch_size`` cells per process and
    step; the validation cells are padded with repeats to an equal share per process).

    Parameters
    ----------
    latents
        Scaled latents of every cell, ``{modality: (cells, d_m)}``.
    labels, batch
        Label and batch codes of every cell, ``(cells,)``.
    observed
        Whether each cell has each modality, ``{modality: (cells,) bool}`` (default: all).
    train_idx, val_idx, test_idx
        The split (positions of cells).
    batch_size
        Cells per minibatch.
    seed
        Seed of the shuffling of training cells.
    """

    def __init__(
        self,
        latents: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        batch: torch.Tensor,
        observed: Mapping[str, torch.Tensor] | None,
        train_idx: Sequence[int],
        val_idx: Sequence[int] | None,
        test_idx: Sequence[int] | None,
        batch_size: int = 128,
        seed: int = 0,
    ):
        super().__init__()
        self.modalities = tuple(latents)
        n = labels.reshape(-1).shape[0]
        observed = observed or {}
        masks = [
            observed[m].reshape(-1).bool() if m in observed else torch.ones(n, dtype=torch.bool)
            for m in self.modalities
        ]
        self.tensors = (*latents.values(), *masks, labels.reshape(-1), batch.reshape(-1))
        self.train_idx = np.asarray(train_idx, dtype=int)
        self.val_idx = np.asarray(val_idx if val_idx is not None else [], dtype=int)
        self.test_idx = np.asarray(test_idx if test_idx is not None else [], dtype=int)
        self.n_train, self.n_val = len(self.train_idx), len(self.val_idx)
        self.batch_size = batch_size
        self.seed = seed

    def _loader(self, idx: np.ndarray, shuffle: bool) -> DataLoader:
        dataset = TensorDataset(*(t[torch.as_tensor(idx)] for t in self.tensors))
        # whole minibatches are gathered with one tensor index rather than cell by cell
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            sampler = BatchDistributedSampler(
                dataset, batch_size=self.batch_size, num_replicas=trainer.world_size,
                rank=trainer.global_rank, shuffle=shuffle, seed=self.seed,
            )  # fmt: skip
        else:
            if shuffle:
                order = RandomSampler(dataset, generator=torch.Generator().manual_seed(self.seed))
            else:
                order = SequentialSampler(dataset)
            sampler = BatchSampler(order, self.batch_size, drop_last=False)
        return DataLoader(dataset, sampler=sampler, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        """Shuffled minibatches of training cells."""
        return self._loader(self.train_idx, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Minibatches of validation cells (none if the split has no validation cells)."""
        return self._loader(self.val_idx, shuffle=False) if self.n_val else []

    def unpack(self, minibatch: Sequence[torch.Tensor]) -> tuple[dict, torch.Tensor, ...]:
        """Split a minibatch into ``({modality: latent}, labels, batch, {modality: observed})``."""
        k = len(self.modalities)
        latents, masks = minibatch[:k], minibatch[k : 2 * k]
        labels, batch = minibatch[2 * k :]
        return (
            dict(zip(self.modalities, latents, strict=True)),
            labels,
            batch,
            dict(zip(self.modalities, masks, strict=True)),
        )
