from __future__ import annotations

import numpy as np
import pytest

from scdx_scvi.metrics import interval_coverage


def test_calibrated_samples_cover_at_the_nominal_level():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=(400, 6))
    samples = centre + rng.normal(size=(200, 400, 6))
    truth = centre + rng.normal(size=(400, 6))  # one more draw of the same distribution
    out = interval_coverage(samples, truth, levels=(0.5, 0.9))
    assert out["coverage_0.5"] == pytest.approx(0.5, abs=0.03)
    assert out["coverage_0.9"] == pytest.approx(0.9, abs=0.02)
    assert out["width_0.5"] < out["width_0.9"]


def test_overconfident_samples_undercover_and_wide_ones_overcover():
    rng = np.random.default_rng(1)
    centre = rng.normal(size=(300, 4))
    truth = centre + rng.normal(size=(300, 4))
    narrow = interval_coverage(centre + 0.1 * rng.normal(size=(50, 300, 4)), truth)
    wide = interval_coverage(centre + 5 * rng.normal(size=(50, 300, 4)), truth)
    assert narrow["coverage_0.9"] < 0.2 and wide["coverage_0.9"] > 0.99
    assert narrow["width_0.9"] < wide["width_0.9"]


def test_interval_coverage_checks_its_inputs():
    with pytest.raises(ValueError, match="samples >= 2"):
        interval_coverage(np.zeros((1, 3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="truth"):
        interval_coverage(np.zeros((4, 3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        interval_coverage(np.zeros((4, 3, 2)), np.zeros((3, 2)), levels=(1.0,))
