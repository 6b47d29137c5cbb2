from __future__ import annotations

import numpy as np
import torch

from scdx_scvi.metrics import pearson_per_feature
from scdx_scvi.model._condition_timesteps import _PearsonSums


def test_running_sums_give_the_per_feature_pearson_correlation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6))
    b = a * np.array([1, -1, 0.1, 0, 2, 1]) + rng.normal(size=(300, 6))
    a[:, 5] = 3.0  # no spread: scores 0
    sums = _PearsonSums()
    for rows in np.array_split(np.arange(300), 7):  # in minibatches, as the fit reads them
        sums.add(torch.as_tensor(a[rows]), torch.as_tensor(b[rows]))
    expected = pearson_per_feature(b, a).mean()
    assert abs(sums.mean_correlation() - expected) < 1e-9
    assert _PearsonSums().mean_correlation() == 0.0
