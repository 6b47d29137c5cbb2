"""The background/foreground negative binomial mixture for protein counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from scdx_scvi.module import CountLikelihood, CountMixtureLikelihood, SCDXModule
from scdx_scvi.module._likelihoods import make_likelihood


def _likelihood(n: int = 4, theta: float = 2.0) -> CountMixtureLikelihood:
    likelihood = CountMixtureLikelihood(n)
    likelihood.log_theta.data.fill_(float(np.log(theta)))
    return likelihood


def _pmf(k: np.ndarray, mu: float, theta: float) -> np.ndarray:
    return stats.nbinom.pmf(k, theta, theta / (theta + mu))


def test_the_mixture_is_two_negative_binomials_whose_mean_is_the_normalized_value():
    likelihood, theta = _likelihood(theta=2.0), 2.0
    logits = torch.randn(3, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    library = torch.tensor([[50.0], [200.0], [1000.0]], dtype=torch.float64)
    px = likelihood.distribution(logits, library)
    torch.testing.assert_close(px.mean, likelihood.normalized(logits, library))
    torch.testing.assert_close(px.mean.sum(-1, keepdim=True), library)  # as softmax * library
    torch.testing.assert_close(
        likelihood.log_normalized(logits).exp(), likelihood.normalized(logits, 1.0)
    )
    # its log-probability is the hand-computed mixture of the two components
    (w, back), (_, fore) = likelihood.components(logits, library)
    k = np.arange(0, 60)
    for cell, feature in [(0, 0), (1, 2), (2, 3)]:
        pmf = float(w[cell, feature]) * _pmf(k, float(back[cell, feature]), theta) + float(
            1 - w[cell, feature]
        ) * _pmf(k, float(fore[cell, feature]), theta)
        x = torch.tensor(k, dtype=torch.float64).reshape(-1, 1, 1).expand(-1, 3, 4)
        ours = px.log_prob(x)[:, cell, feature].exp().detach().numpy()
        np.testing.assert_allclose(ours, pmf, rtol=1e-5, atol=1e-12)
    assert (fore >= back).all()  # the foreground lies above the background


def test_draws_choose_their_component_each_and_follow_the_mixture():
    likelihood = _likelihood(n=2, theta=20.0)
    # one feature nearly all background, one evenly mixed with a far foreground
    logits = torch.tensor([[0.0, 0.0, -3.0, 6.0, 8.0, 0.0]])
    px = likelihood.distribution(logits, torch.tensor([[400.0]]))
    torch.manual_seed(0)
    draws = px.sample((20_000,))
    assert draws.shape == (20_000, 1, 2) and torch.equal(draws, draws.round())
    (w, back), (_, fore) = likelihood.components(logits, 400.0)
    mean = px.mean[0]
    np.testing.assert_allclose(draws.mean(0)[0].numpy(), mean.detach().numpy(), rtol=0.03)
    # both components appear in the evenly mixed feature, in their proportions
    near_back = (draws[:, 0, 1] < (back[0, 1] + fore[0, 1]) / 2).float().mean()
    assert abs(float(near_back) - float(w[0, 1])) < 0.02


def test_expected_log1p_is_the_expectation_under_the_mixture():
    theta = 3.0
    likelihood = _likelihood(n=3, theta=theta)
    logits = torch.tensor([[0.5, -1.0, 2.0, 1.0, 3.0, -0.5, 0.0, 2.0, -2.0]], dtype=torch.float64)
    library, library_size = 300.0, 1e4
    with torch.no_grad():
        value = likelihood.expected_log1p(logits, torch.tensor(library), library_size)
    (w, back), (_, fore) = likelihood.components(logits, library)
    k = np.arange(50_000)
    for j in range(3):
        pmf = float(w[0, j]) * _pmf(k, float(back[0, j]), theta) + float(1 - w[0, j]) * _pmf(
            k, float(fore[0, j]), theta
        )
        exact = float((pmf * np.log1p(k * library_size / library)).sum())
        assert abs(float(value[0, j]) - exact) < 0.12


def test_module_decodes_three_logits_per_protein_and_scores_and_draws_proteins():
    module = SCDXModule(
        n_features={"rna": 6, "protein": 4},
        n_hidden={"rna": (8,), "protein": (8,)},
        n_latent={"rna": 3, "protein": 3},
        protein_likelihood="nb_mixture",
    ).eval()
    assert isinstance(module.likelihoods["protein"], CountMixtureLikelihood)
    assert type(module.likelihoods["rna"]) is CountLikelihood
    z = {"rna": torch.randn(5, 3), "protein": torch.randn(5, 3)}
    with torch.no_grad():
        assert module.decode_logits(z)["protein"].shape == (5, 12)
        values = module.decode_normalized(z, library_size=1e4)
        log1p = module.decode_normalized(z, library_size=1e4, expected="log1p")
    assert values["protein"].shape == log1p["protein"].shape == (5, 4)
    torch.testing.assert_close(values["protein"].sum(-1), torch.full((5,), 1e4))
    assert (log1p["protein"] <= values["protein"] * (1 + 1e-5)).all()  # Jensen
    draws = module.sample_counts(z, torch.zeros(5))
    assert draws["protein"].shape == (5, 4) and torch.equal(
        draws["protein"], draws["protein"].round()
    )


def test_protein_likelihood_is_checked():
    with pytest.raises(ValueError, match="protein_likelihood must be"):
        make_likelihood("protein", 4, "counts", "zinb")
