"""Calibration of sampled translations: whether the samples cover what they should.

With ``n_samples > 1`` a translation gives a spread of predictions per cell. That spread is
useful only if it is calibrated: a central interval holding a share ``level`` of the samples
should hold the true value about that share of the time. :func:`interval_coverage` measures it;
the interval width, relative to how much the true value varies between cells, shows whether good
coverage comes from informative or from uselessly wide intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def interval_coverage(
    samples: np.ndarray, truth: np.ndarray, levels: Sequence[float] = (0.5, 0.8, 0.9)
) -> dict[str, float]:
    """Coverage of true values by the central intervals of per-cell samples.

    Parameters
    ----------
    samples
        Sampled predictions, shape (samples, cells, features), at least two samples.
    truth
        The values the samples should cover, shape (cells, features), on the same scale.
    levels
        Nominal levels of the central intervals (between 0 and 1).

    Returns
    -------
    For each level ``l``: ``coverage_<l>``, the share of (cell, feature) entries whose true
    value lies in the interval between the ``(1 - l) / 2`` and ``(1 + l) / 2`` quantiles of its
    samples (``l`` is ideal), and ``width_<l>``, the mean interval width divided by the mean
    over features of the true values' standard deviation across cells (0 is a point estimate;
    intervals as wide as the differences between cells give about 1 to 3).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=(200, 5))
    >>> samples = truth + rng.normal(size=(50, 200, 5))  # calibrated: truth is one more draw
    >>> round(interval_coverage(samples, truth + rng.normal(size=(200, 5)))["coverage_0.9"], 1)
    0.9
    """
    samples, truth = np.asarray(samples, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if samples.ndim != 3 or samples.shape[0] < 2:
        raise ValueError(
            f"`samples` must have shape (samples >= 2, cells, features), got {samples.shape}."
        )
    if samples.shape[1:] != truth.shape:
        raise ValueError(
            f"`truth` has shape {truth.shape}; the samples cover {samples.shape[1:]} entries."
        )
    scale = truth.std(axis=0).mean()
    out = {}
    for level in levels:
        if not 0 < level < 1:
            raise ValueError(f"Every level must be between 0 and 1, got {level}.")
        low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
        out[f"coverage_{level:g}"] = float(((truth >= low) & (truth <= high)).mean())
        out[f"width_{level:g}"] = float((high - low).mean() / scale) if scale else float("nan")
    return out
