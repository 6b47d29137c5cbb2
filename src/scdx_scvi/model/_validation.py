"""Reading validation cells for the choices made after the diffusion is trained.

Two settings of a trained diffusion are chosen on the validation cells, which the denoiser has
not seen: the timestep at which each source enters a translation (``_condition_timesteps``) and
the spread of sampled translations (``_translation_spread``). Both read the same cells in the
same way and compare translations with what was measured on the scale the benchmarks use.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from scdx_scvi._constants import MODULE_KEYS
from scdx_scvi.module._likelihoods import LOG1P_TARGET_SUM

#: Validation cells used at most (the first ones).
MAX_CELLS = 1024
#: Values of one decoded minibatch at most (64 MiB of float32), whatever the number of features.
MAX_VALUES = 2**24


def validation_minibatches(
    model, indices: Sequence[int], copies: int = 1, max_cells: int = MAX_CELLS
) -> Iterator[tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor], Tensor | None]]:
    """Yield ``(z, observed, x, batch_index)`` for the first ``max_cells`` of ``indices``.

    ``z`` are the autoencoder latents, ``observed`` which modalities each cell has, ``x`` the
    raw values and ``batch_index`` the batch codes (``None`` without a batch covariate), all on
    the model's device. Minibatches hold at most 256 cells and, decoded ``copies`` times over,
    :data:`MAX_VALUES` values of the widest modality.
    """
    module = model.module
    module.eval()
    cells = np.asarray(indices, dtype=int)[:max_cells]
    if not len(cells):
        return
    width = max(module.n_features.values()) * max(1, copies)
    batch_size = max(1, min(256, MAX_VALUES // width))
    loader = model._make_data_loader(adata=model.adata, indices=cells, batch_size=batch_size)
    for tensors in loader:
        inputs = module._get_inference_input(tensors)
        out = module.inference(**inputs)
        z, observed = out[MODULE_KEYS.Z], out[MODULE_KEYS.OBSERVED]
        device = next(iter(z.values())).device
        x = {m: v.to(device) for m, v in inputs[MODULE_KEYS.X].items()}
        batch_index = inputs[MODULE_KEYS.BATCH_INDEX]
        yield z, observed, x, None if batch_index is None else batch_index.to(device)


def scored(likelihood, logits: Tensor) -> Tensor:
    """Return decoded values on the scale the benchmarks score translations.

    Counts: log1p of values per 10k; accessibility: the probability.
    """
    if likelihood.binary:
        return likelihood.normalized(logits)
    return torch.log1p(likelihood.normalized(logits, LOG1P_TARGET_SUM))


def measured(likelihood, x: Tensor) -> Tensor:
    """Return measured values on the scale of :func:`scored`.

    Counts: log1p of values per 10k (normalised by the cell's own library); accessibility:
    binarised.
    """
    if x.layout != torch.strided:
        x = x.to_dense()
    if likelihood.binary:
        return likelihood.observed(x)
    library = x.sum(dim=-1, keepdim=True).clamp(min=1.0)
    return torch.log1p(x / library * LOG1P_TARGET_SUM)
