from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.spatial.distance import cdist, pdist
from scipy.stats import energy_distance as scipy_energy_distance
from sklearn.decomposition import PCA

from scdx_scvi.metrics import (
    classifier_auc,
    energy_distance,
    generation_scores,
    log_cp10k,
    mixing_score,
    mmd_rbf,
    pca_projection,
    per_group,
    spread_ratio,
)


def _samples(shift: float, n_x: int = 150, n_y: int = 150, dim: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_x, dim)), rng.normal(size=(n_y, dim)) + shift


def _brute_mmd(x, y, scales, bandwidth):
    z = np.concatenate([x, y])
    if bandwidth == "mean":
        h = pdist(z, "sqeuclidean").mean()
    elif bandwidth == "median":
        h = np.median(pdist(z, "sqeuclidean"))
    else:
        h = bandwidth

    def k(a, b):
        d = cdist(a, b, "sqeuclidean")
        return np.mean([np.exp(-d / (s * h)) for s in scales], axis=0).mean()

    return k(x, x) + k(y, y) - 2 * k(x, y)


def _brute_energy(x, y):
    return 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()


def test_mmd_by_hand():
    x, y = np.array([[0.0]]), np.array([[1.0]])
    # K_xx = K_yy = 1, K_xy = exp(-1 / (s h)); the mean squared distance of {0, 1} is h = 1
    assert mmd_rbf(x, y, scales=(1.0,), bandwidth=1.0) == pytest.approx(2 - 2 * np.exp(-1))
    scales = np.array([0.25, 0.5, 1.0, 2.0, 4.0])
    assert mmd_rbf(x, y) == pytest.approx(2 - 2 * np.exp(-1 / scales).mean())
    assert mmd_rbf(x, x) == 0.0  # all points coincide


@pytest.mark.parametrize("bandwidth", ["mean", "median", 3.0])
@pytest.mark.parametrize("scales", [(0.25, 0.5, 1.0, 2.0, 4.0), (0.3, 1.0, 3.0)])
def test_mmd_chunked_matches_full_matrix_unequal_sizes(bandwidth, scales):
    x, y = _samples(0.5, n_x=13, n_y=7, dim=3)
    expected = _brute_mmd(x, y, scales, bandwidth)
    result = mmd_rbf(x, sparse.csr_matrix(y), scales=scales, bandwidth=bandwidth, chunk_size=4)
    assert result == pytest.approx(expected, rel=1e-10, abs=1e-13)


def test_mmd_identical_vs_separated():
    same = mmd_rbf(*_samples(0.0))
    far = mmd_rbf(*_samples(10.0))
    assert 0 <= same < 0.02
    assert far > 0.5


def test_energy_by_hand_and_scipy_1d():
    # E|X-Y| = 1, E|X-X'| = (0 + 2 + 2 + 0) / 4 = 1, E|Y-Y'| = 0 -> 2 - 1 - 0
    assert energy_distance(np.array([[0.0], [2.0]]), np.array([[1.0]])) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=9), rng.normal(size=5) + 1
    # in 1-D the energy distance is 2 ∫ (F - G)², scipy returns its square root
    assert energy_distance(a[:, None], b[:, None], chunk_size=2) == pytest.approx(
        scipy_energy_distance(a, b) ** 2
    )


def test_energy_chunked_matches_full_matrix():
    x, y = _samples(0.7, n_x=11, n_y=6, dim=3)
    assert energy_distance(sparse.csr_matrix(x), y, chunk_size=3) == pytest.approx(
        _brute_energy(x, y), rel=1e-10
    )
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert energy_distance(*_samples(10.0)) > 10.0


@pytest.mark.parametrize("as_sparse", [False, True])
def test_classifier_auc(as_sparse):
    x, y = _samples(0.0, n_x=120, n_y=80)
    wrap = sparse.csr_matrix if as_sparse else np.asarray
    same = classifier_auc(wrap(x), wrap(y), seeds=(0, 1), n_estimators=30)
    assert len(same["auc_per_seed"]) == 2
    assert same["auc"] == pytest.approx(np.mean(same["auc_per_seed"]))
    assert abs(same["auc"] - 0.5) < 0.15
    far = classifier_auc(*_samples(10.0, n_x=120, n_y=80), seeds=(0,), n_estimators=30)
    assert far["auc"] == pytest.approx(1.0)


def test_mixing_by_hand():
    real = np.array([[0.0], [1.0], [2.0]])
    generated = np.array([[0.1], [1.1], [2.1]])
    # k = 1: every neighbour has the other label -> proportions (0, 1) -> 0
    assert mixing_score(real, generated, k=1, normalize=False) == 0.0
    # k = 2: cells 0.0 and 2.1 see one cell of each label (score 1), the others one label (0)
    assert mixing_score(real, generated, k=2, normalize=False) == pytest.approx(1 / 3)
    # random labels, k = 2 draws from the 5 other cells (2 same, 3 other label): P(one each)
    # = 3 * 2 / 10, so the expectation is 0.6 and the normalised score (1/3) / 0.6
    assert mixing_score(real, generated, k=2) == pytest.approx(5 / 9)


def test_mixing_reweights_unequal_sizes_by_hand():
    real = np.array([[0.0], [10.0]])
    generated = np.array([[0.1], [0.3], [10.1], [10.3]])
    # real cells: both neighbours generated -> 0. Generated cells: one of each label,
    # q = (1/4) / (1/4 + 1/2) = 1/3 -> 1 / (1/9 + 4/9) - 1 = 4/5. Mean = 4 * 0.8 / 6.
    assert mixing_score(real, generated, k=2, normalize=False) == pytest.approx(8 / 15)


@pytest.mark.parametrize(("n_real", "n_generated"), [(200, 200), (300, 60)])
def test_mixing_identical_vs_separated(n_real, n_generated):
    same = mixing_score(*_samples(0.0, n_x=n_real, n_y=n_generated))
    assert 0.9 < same <= 1.0
    assert mixing_score(*_samples(10.0, n_x=n_real, n_y=n_generated)) == 0.0


@pytest.mark.parametrize("as_sparse", [False, True])
def test_pca_projection_is_fitted_on_real_cells(as_sparse):
    rng = np.random.default_rng(2)
    real = rng.poisson(2.0, size=(40, 12)).astype(float)
    generated = rng.poisson(3.0, size=(25, 12)).astype(float)
    wrap = sparse.csr_matrix if as_sparse else np.asarray
    real_pcs, gen_pcs = pca_projection(wrap(real), wrap(generated), n_comps=5)
    pca = PCA(n_components=5).fit(log_cp10k(real))
    expected_real = pca.transform(log_cp10k(real))
    expected_gen = pca.transform(log_cp10k(generated))
    signs = np.sign((real_pcs * expected_real).sum(axis=0))  # components are defined up to sign
    np.testing.assert_allclose(real_pcs * signs, expected_real, atol=1e-8)
    np.testing.assert_allclose(gen_pcs * signs, expected_gen, atol=1e-8)
    # the generated cells do not influence the space
    real_pcs_2, _ = pca_projection(wrap(real), wrap(generated * 5 + 1), n_comps=5)
    np.testing.assert_allclose(np.abs(real_pcs_2), np.abs(real_pcs), atol=1e-8)


def test_pca_projection_without_normalisation_caps_components():
    real = np.random.default_rng(3).normal(size=(6, 4))
    real_pcs, gen_pcs = pca_projection(real, real[:2], n_comps=50, log_normalize=False)
    assert real_pcs.shape == (6, 3) and gen_pcs.shape == (2, 3)
    np.testing.assert_allclose(gen_pcs, real_pcs[:2])


def test_per_group():
    real = np.array([[0.0], [2.0], [5.0], [5.0], [7.0]])
    generated = np.array([[1.0], [5.0], [5.0], [6.0]])
    real_groups = ["a", "a", "b", "b", "c"]
    generated_groups = ["a", "b", "b", "d"]
    table = per_group(energy_distance, real, generated, real_groups, generated_groups, min_cells=1)
    assert list(table["group"]) == ["a", "b", "c", "d"]
    assert list(table["n_real"]) == [2, 2, 1, 0]
    assert list(table["n_generated"]) == [1, 2, 0, 1]
    assert list(table["scored"]) == [True, True, False, False]
    np.testing.assert_allclose(table["energy_distance"], [1.0, 0.0, np.nan, np.nan])
    strict = per_group(energy_distance, real, generated, real_groups, generated_groups, min_cells=2)
    assert list(strict["scored"]) == [False, True, False, False]


def test_per_group_expands_dict_results():
    x, y = _samples(10.0, n_x=60, n_y=60)
    groups = np.repeat(["t", "b"], 30)
    table = per_group(
        classifier_auc, x, y, groups, groups, min_cells=10, seeds=(0,), n_estimators=10
    )
    assert isinstance(table, pd.DataFrame)
    assert list(table["group"]) == ["b", "t"]
    np.testing.assert_allclose(table["auc"], [1.0, 1.0])


def test_generation_scores():
    rng = np.random.default_rng(4)
    real = sparse.csr_matrix(rng.poisson(2.0, size=(150, 20)).astype(float))
    same = rng.poisson(2.0, size=(150, 20)).astype(float)
    kwargs = {"n_comps": 5, "seeds": (0,), "n_estimators": 20}
    scores = generation_scores(real, same, **kwargs)
    assert set(scores) == {
        "mmd_rbf",
        "energy_distance",
        "classifier_auc",
        "classifier_auc_std",
        "mixing",
        "spread_ratio",
        "n_real",
        "n_generated",
        "n_comps",
    }
    assert scores["n_comps"] == 5 and scores["n_real"] == 150
    different = rng.poisson(2.0, size=(150, 20)).astype(float)
    different[:, :10] *= 4
    worse = generation_scores(real, different, **kwargs)
    assert worse["mmd_rbf"] > scores["mmd_rbf"]
    assert worse["energy_distance"] > scores["energy_distance"]
    assert worse["classifier_auc"] > scores["classifier_auc"]
    assert worse["mixing"] < scores["mixing"]
    assert 0.8 < scores["spread_ratio"] < 1.25
    blurred = np.repeat(real.toarray().mean(axis=0, keepdims=True), 150, axis=0)
    blurred = rng.poisson(blurred).astype(float)  # cell-to-cell variation of the means lost
    assert generation_scores(real, blurred, **kwargs)["spread_ratio"] < scores["spread_ratio"]
    sub = generation_scores(real, same, max_cells=50, **kwargs)
    assert sub["n_real"] == 50 and sub["n_generated"] == 50


@pytest.mark.parametrize(
    "fn", [mmd_rbf, energy_distance, classifier_auc, mixing_score, pca_projection]
)
def test_feature_mismatch(fn):
    with pytest.raises(ValueError, match="Feature dimensions differ"):
        fn(np.zeros((5, 2)), np.zeros((5, 3)))


def test_bad_inputs():
    with pytest.raises(ValueError, match="k must be"):
        mixing_score(np.zeros((3, 2)), np.ones((3, 2)), k=6)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd_rbf(np.zeros((3, 2)), np.ones((3, 2)), bandwidth="max")
    with pytest.raises(ValueError, match="real_groups"):
        per_group(mmd_rbf, np.zeros((3, 2)), np.ones((3, 2)), ["a"], ["a"] * 3)


def test_paired_draws_stay_in_one_fold():
    # draws of the real cells themselves, with a little noise: a good generator of these cells
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 5))
    draws = real + rng.normal(scale=0.05, size=real.shape)
    split = classifier_auc(real, draws, seeds=(0, 1), n_estimators=30)["auc"]
    grouped = classifier_auc(real, draws, seeds=(0, 1), n_estimators=30, paired=True)["auc"]
    assert split < 0.4  # a cell's twin in the training folds teaches the wrong label
    assert abs(grouped - 0.5) < 0.1
    # counts drawn twice at each cell's own rates, as reconstruction draws are
    rates = np.exp(rng.normal(size=(200, 1)) + rng.normal(size=(1, 12)) + 2.0)
    counts, redrawn = rng.poisson(rates), rng.poisson(rates)
    scores = generation_scores(counts, redrawn, "protein", n_comps=4, seeds=(0,), paired=True)
    assert abs(scores["classifier_auc"] - 0.5) < 0.1
    with pytest.raises(ValueError, match="as many cells"):
        classifier_auc(real, draws[:150], paired=True)
    with pytest.raises(ValueError, match="as many cells"):
        generation_scores(real, draws[:150], "protein", paired=True)


def test_spread_ratio():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(400, 8)) * np.array([4.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert spread_ratio(real, real.copy()) == pytest.approx(1.0)
    assert spread_ratio(real, real * 0.5) == pytest.approx(0.25)
    assert spread_ratio(real, real * 2.0, n_axes=2) == pytest.approx(4.0)
    # only the leading axes count: noise on the last axis leaves the ratio of the first two
    noisy = real.copy()
    noisy[:, -1] *= 10
    assert spread_ratio(real, noisy, n_axes=2) == pytest.approx(1.0)
    assert np.isnan(spread_ratio(np.zeros((10, 3)), real[:10, :3]))
    with pytest.raises(ValueError, match="n_axes"):
        spread_ratio(real, real, n_axes=0)
