"""The timestep at which a translation's source enters the denoiser, chosen on validation cells.

A diffusion trained with noisy conditions (``condition_noise`` ``S > 0``) has learned the
target given its source at every noise level from 0 to ``S``: the more noise, the wider the
neighbourhood of the source whose targets the estimate averages. Which width serves new cells
best depends on the data (how much of the target the source determines, how many cells there
are), so it is chosen after training by translating validation cells, which the denoiser has
not seen, and comparing the translation with what was measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ._validation import measured, scored, validation_minibatches

#: Noise levels tried, evenly spaced over ``[0, condition_noise]``.
N_LEVELS = 9


class _PearsonSums:
    """Running sums of the per-feature Pearson correlation of two (cells, features) streams."""

    def __init__(self) -> None:
        self.n, self.sums = 0, None

    def add(self, a: Tensor, b: Tensor) -> None:
        terms = (a, b, a * a, b * b, a * b)  # float32 products, float64 sums
        sums = torch.stack([term.sum(0, dtype=torch.float64) for term in terms])
        self.sums = sums if self.sums is None else self.sums + sums
        self.n += a.shape[0]

    def mean_correlation(self) -> float:
        """Mean over the features of the correlation (0 for a feature without spread)."""
        if self.sums is None or self.n < 2:
            return 0.0
        sa, sb, saa, sbb, sab = self.sums
        n = self.n
        cov, var_a, var_b = n * sab - sa * sb, n * saa - sa * sa, n * sbb - sb * sb
        denom = (var_a.clamp(min=0) * var_b.clamp(min=0)).sqrt()
        r = torch.where(denom > 1e-12 * n * n, cov / denom.clamp(min=1e-300), torch.zeros_like(cov))
        return float(r.clamp(-1, 1).mean())


@torch.no_grad()
def fit_condition_timesteps(model, indices: Sequence[int]) -> dict[str, dict[int, float]]:
    """Choose, per source modality, the timestep at which it enters the denoiser at sampling.

    Each modality in turn is the only source: the other modalities of up to
    :data:`~scdx_scvi.model._validation.MAX_CELLS` validation cells (``indices``) are
    translated from it with the conditional mean (:class:`~scdx_scvi.diffusion.MeanSampler`,
    null label, as :meth:`~scdx_scvi.model.SCDX.get_translated_modality` does by default),
    with the source given at each of :data:`N_LEVELS` timesteps over ``[0, condition_noise]``,
    and compared with the measured values: the mean per-feature Pearson correlation, on log1p
    values per 10k for counts and on the binarised accessibility for ATAC. The timestep with
    the highest correlation (averaged over the targets; the smallest of equals) is kept in the
    diffusion's ``condition_timesteps``. Without ``condition_noise`` (or conditional training)
    nothing changes; with fewer than three validation cells that have the source and a target,
    the source gets ``condition_noise // 2``.
    Cells are read by :func:`~scdx_scvi.model._validation.validation_minibatches`.

    Returns
    -------
    ``{source: {timestep: correlation}}``, the scores behind the choice.
    """
    module = model.module
    diffusion = module.diffusion
    top = diffusion.condition_noise
    if not top or not diffusion.condition_prob or len(diffusion.modalities) < 2:
        return {}
    grid = np.unique(np.linspace(0, top, N_LEVELS).round().astype(int)).tolist()
    sums = {}
    for z, observed, x, batch_index in validation_minibatches(model, indices):
        for i, source in enumerate(diffusion.modalities):
            for s in grid:
                diffusion.condition_timesteps[i] = s
                estimate = diffusion.sample("mean", condition={source: z[source]})
                for target, z_target in estimate.items():
                    both = observed[source] & observed[target]
                    if not both.any():
                        continue
                    cov = None if batch_index is None else batch_index[both]
                    logits = module.decode_logits({target: z_target[both]}, cov)[target]
                    likelihood = module.likelihoods[target]
                    pair = scored(likelihood, logits), measured(likelihood, x[target][both])
                    sums.setdefault((source, s, target), _PearsonSums()).add(*pair)
    scores = {}
    for i, source in enumerate(diffusion.modalities):
        counted = {key: value for key, value in sums.items() if key[0] == source}
        if sum(value.n for key, value in counted.items() if key[1] == grid[0]) < 3:
            diffusion.condition_timesteps[i] = top // 2
            continue
        scores[source] = {}
        for s in grid:
            r = [value.mean_correlation() for key, value in counted.items() if key[1] == s]
            scores[source][s] = float(np.mean(r))
        diffusion.condition_timesteps[i] = max(grid, key=lambda s: (scores[source][s], -s))
    return scores
