"""The spread of sampled translations, calibrated on validation cells.

A diffusion fitted to a few hundred or thousand cells learns how the target varies given the
source on those cells: there its samples cover the truth about as often as they should. On new
cells its conditional mean errs by more than that spread, so central intervals of the samples
hold the truth less often than their level says (user guide, "Calibration of sampled
translations"). The spread is therefore set after training, as in split-conformal calibration:
each sample's distance from the conditional mean is multiplied by the one factor per direction
whose intervals cover best what the validation cells, which the denoiser has not seen, measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._validation import MAX_CELLS, scored, validation_minibatches

#: Factors tried: 2^(k/4) from 1/2 to 8.
FACTORS = tuple(2.0 ** (k / 4) for k in range(-4, 13))
#: Nominal levels of the central intervals the factor is fitted to.
LEVELS = (0.5, 0.8, 0.9)
#: Sampled translations per validation cell.
N_DRAWS = 8
#: Sampler of the draws.
SAMPLER = "dpm++2m"
#: Values (cells x features of the widest modality) the fit decodes at most per factor and draw.
#: Past it fewer validation cells are read, so that the fit's cost stops growing with the
#: number of features: at 200,000 peaks it reads 167 cells (every validation cell of the shared
#: data sets, up to 25,734 peaks, stays in).
MAX_SCORED_VALUES = 2**25
#: Validation cells the fit reads at least, however many the features.
MIN_CELLS = 128


def n_fit_cells(n_features: int) -> int:
    """Return the validation cells the fit reads, the widest modality having ``n_features``."""
    return min(MAX_CELLS, max(MIN_CELLS, MAX_SCORED_VALUES // max(1, n_features)))


def choose_factor(coverage: np.ndarray) -> int:
    """Index of the factor whose coverage is closest to the levels.

    ``coverage`` has one row per factor of :data:`FACTORS` and one column per level of
    :data:`LEVELS`; the factor with the smallest sum of absolute differences from the levels is
    chosen (the one nearest 1 among equals).
    """
    error = np.abs(np.asarray(coverage) - np.asarray(LEVELS)).sum(axis=1)
    closeness = np.abs(np.log(FACTORS))
    return int(np.lexsort((closeness, error.round(12)))[0])


@torch.no_grad()
def fit_translation_spread(model, indices: Sequence[int], seed: int = 0) -> dict[str, dict]:
    """Set the diffusion's ``translation_spread`` from validation cells; return the scores.

    Each modality in turn is the only source: the other modalities of the first
    :func:`n_fit_cells` validation cells (``indices``) are translated :data:`N_DRAWS` times
    (:data:`SAMPLER` with its default steps, null label) and once with the conditional mean.
    For every factor of :data:`FACTORS`, the draws' distances from the mean are multiplied by
    it and decoded (log1p values per 10k for counts, probabilities for ATAC), and each value of
    the cell's own target decoded the same way (its reconstruction, what a perfect translation
    would give) is ranked among its draws. If the truth were one more draw, its randomised rank
    (probability integral transform) would be uniform, and the central interval of each level
    in :data:`LEVELS` would hold it that share of the time, whatever the number of draws and
    however skewed they are. The factor whose coverage, over every cell and feature, is closest
    to the levels (:func:`choose_factor`) is kept for that source and target. Without a learned
    conditional (``condition_prob=0``) or with fewer than three validation cells that have both,
    the factor stays 1.

    Returns
    -------
    ``{"<source>-><target>": {"factor": f, "coverage": {f: [coverage per level]}}}``.
    """
    module = model.module
    diffusion = module.diffusion
    diffusion.translation_spread.fill_(1.0)
    if not diffusion.condition_prob or len(diffusion.modalities) < 2:
        return {}
    half_widths = torch.tensor(LEVELS, dtype=torch.float64) / 2
    hits, counts = {}, {}
    generator = torch.Generator(device=diffusion.ema_updates.device).manual_seed(seed)
    max_cells = n_fit_cells(max(module.n_features.values()))
    minibatches = validation_minibatches(model, indices, copies=4, max_cells=max_cells)
    for z, observed, _, batch_index in minibatches:
        for source in diffusion.modalities:
            condition = {source: z[source]}
            mean = diffusion.sample("mean", condition=condition)
            draws = [
                diffusion.sample(
                    SAMPLER, condition=condition, generator=generator, spread="learned"
                )
                for _ in range(N_DRAWS)
            ]
            for target, centre in mean.items():
                both = observed[source] & observed[target]
                if not both.any():
                    continue
                cov = None if batch_index is None else batch_index[both]
                likelihood = module.likelihoods[target]

                def decode(latent, cov=cov, likelihood=likelihood, target=target):
                    return scored(likelihood, module.decode_logits({target: latent}, cov)[target])

                truth = decode(z[target][both])
                centred = centre[both]
                deviations = [(draw[target] - centre)[both] for draw in draws]
                jitter = torch.rand(truth.shape, generator=generator, device=truth.device)
                key = (source, target)
                hits.setdefault(key, torch.zeros(len(FACTORS), len(LEVELS), dtype=torch.float64))
                counts[key] = counts.get(key, 0) + truth.numel()
                for i, factor in enumerate(FACTORS):
                    below = torch.zeros_like(truth)
                    for deviation in deviations:
                        below += decode(centred + factor * deviation) < truth
                    # randomised PIT: uniform on (0, 1) when the truth is one more draw
                    pit = ((below + jitter) / (N_DRAWS + 1)).double().cpu()
                    inside = (pit - 0.5).abs().unsqueeze(-1) <= half_widths
                    hits[key][i] += inside.reshape(-1, len(LEVELS)).sum(0)
    scores = {}
    for (source, target), table in hits.items():
        if counts[(source, target)] < 3 * module.n_features[target]:
            continue
        coverage = (table / counts[(source, target)]).numpy()
        best = choose_factor(coverage)
        i, j = diffusion.modalities.index(source), diffusion.modalities.index(target)
        diffusion.translation_spread[i, j] = FACTORS[best]
        scores[f"{source}->{target}"] = {
            "factor": FACTORS[best],
            "coverage": dict(zip(FACTORS, coverage.round(4).tolist(), strict=True)),
        }
    return scores
