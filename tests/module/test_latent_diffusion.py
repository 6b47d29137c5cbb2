from __future__ import annotations

import pytest
import torch

from scdx_scvi.module import LatentDiffusion

DIMS = {"rna": 4, "atac": 3, "protein": 2}


class _Recorder(torch.nn.Module):
    """Stands in for the denoiser: records its inputs, predicts zeros."""

    def forward(self, x, t, labels=None, batch=None):
        self.x, self.t = {m: v.clone() for m, v in x.items()}, {m: v.clone() for m, v in t.items()}
        self.labels = labels
        return {m: torch.zeros_like(v) for m, v in x.items()}


def _diffusion(dims, condition_prob):
    torch.manual_seed(0)
    diffusion = LatentDiffusion(dims, n_channels=8, condition_prob=condition_prob)
    diffusion.denoiser = _Recorder()
    return diffusion


def _latents(dims, n=64):
    return {m: torch.randn(n, d) for m, d in dims.items()}


def test_reference_loss_shares_the_timestep_and_counts_every_modality():
    dims = {"rna": 4, "atac": 3}
    diffusion = _diffusion(dims, 0.0)
    x0 = _latents(dims)
    loss, mse, target = diffusion.loss(x0, generator=torch.Generator().manual_seed(0))
    t = diffusion.denoiser.t
    assert torch.equal(t["rna"], t["atac"])
    assert all(target[m].all() for m in dims)
    # zero prediction: the MSE is the noise power, and the loss sums the modalities
    torch.testing.assert_close(loss, mse["rna"] + mse["atac"])


@pytest.mark.parametrize("n_mod", [2, 3])
def test_conditional_training_gives_clean_sources_at_t0(n_mod):
    dims = dict(list(DIMS.items())[:n_mod])
    diffusion = _diffusion(dims, 1.0)
    x0 = _latents(dims, n=400)
    _, _, target = diffusion.loss(x0, generator=torch.Generator().manual_seed(1))
    x, t = diffusion.denoiser.x, diffusion.denoiser.t
    conditions = torch.stack([~target[m] for m in dims], -1)
    k = conditions.sum(-1)
    assert ((k > 0) & (k < n_mod)).all()  # a non-empty proper subset in every cell
    for m in dims:
        cond = ~target[m]
        assert (t[m][cond] == 0).all()
        torch.testing.assert_close(x[m][cond], x0[m][cond])  # clean, not noised
        assert not torch.isclose(x[m][~cond], x0[m][~cond]).all()
    # targets share one timestep
    targets = torch.stack([t[m] for m in dims], -1).masked_fill(conditions, -1).max(-1).values
    for m in dims:
        assert torch.equal(t[m][target[m]], targets[target[m]])
    # every subset shows up
    assert len({tuple(row.tolist()) for row in conditions}) == 2**n_mod - 2


def test_missing_modalities_are_noise_at_the_last_step_and_not_in_the_loss():
    dims = {"rna": 4, "atac": 3}
    diffusion = _diffusion(dims, 0.5)
    x0 = _latents(dims, n=200)
    observed = {"rna": torch.ones(200, dtype=torch.bool), "atac": torch.arange(200) % 2 == 0}
    loss, mse, target = diffusion.loss(x0, observed=observed, generator=torch.Generator())
    t = diffusion.denoiser.t
    missing = ~observed["atac"]
    assert (t["atac"][missing] == diffusion.schedule.T - 1).all()
    assert not target["atac"][missing].any()
    assert target["rna"][missing].all()  # an rna-only cell trains the rna marginal
    torch.testing.assert_close(loss[missing], mse["rna"][missing])
    # paired cells may be conditional in either direction
    assert (~target["atac"][observed["atac"]]).any() and (~target["rna"]).any()


def test_conditional_examples_drop_the_label_more_often():
    dims = {"rna": 4, "atac": 3}
    torch.manual_seed(0)
    diffusion = LatentDiffusion(
        dims, n_labels=3, n_channels=8, condition_prob=0.5, label_dropout=0.1,
        condition_label_dropout=0.6,
    )  # fmt: skip
    diffusion.denoiser = _Recorder()
    n = 20_000
    labels = torch.randint(0, 3, (n,))
    _, _, target = diffusion.loss(_latents(dims, n), labels, generator=torch.Generator())
    null = diffusion.denoiser.labels == 3
    conditional = ~(target["rna"] & target["atac"])
    assert abs(null[conditional].float().mean() - 0.6) < 0.02
    assert abs(null[~conditional].float().mean() - 0.1) < 0.02
    # no dropout at all in evaluation mode
    diffusion.eval()
    diffusion.loss(_latents(dims, n), labels, generator=torch.Generator())
    assert torch.equal(diffusion.denoiser.labels, labels)


def test_condition_prob_is_checked():
    with pytest.raises(ValueError, match="condition_prob"):
        LatentDiffusion({"rna": 2, "atac": 2}, condition_prob=1.5)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("latent_scaling", ["scalar", "per_dim"])
def test_gaussian_residual_is_optimal_for_gaussian_latents_at_init(latent_scaling, prediction):
    """With a zero network, the prediction is E[eps | x_t] for Gaussian latents of that scale."""
    torch.manual_seed(0)
    diffusion = LatentDiffusion(
        {"rna": 8, "atac": 2},
        n_channels=8,
        latent_scaling=latent_scaling,
        gaussian_residual=True,
        prediction=prediction,
    )
    diffusion.ema = _ZeroNet()
    std = 0.1 if latent_scaling == "scalar" else 1.0
    n = 20_000
    x0, noise = torch.randn(n, 8) * std, torch.randn(n, 8)
    eps_fn = diffusion.labelled_denoiser()
    for t in (0, 100, 500, 999):
        tt = torch.full((n,), t)
        xt = diffusion.schedule.q_sample(x0, tt, noise)
        pred = eps_fn({"rna": xt}, {"rna": tt}, None)["rna"]
        # E[eps | x_t] is linear in x_t for Gaussian data: no other scale of it does better
        mse = ((pred - noise) ** 2).mean()
        for factor in (0.8, 1.25) if t > 0 else ():
            assert mse <= ((factor * pred - noise) ** 2).mean() + 1e-6
        # and it beats the plain network's zero prediction and the trivial eps = x_t
        assert mse < 1.0 and mse <= ((xt - noise) ** 2).mean() * (1 + 1e-4)
    # off by default (the reference)
    assert not LatentDiffusion({"rna": 2, "atac": 2}).gaussian_residual


class _ZeroNet(torch.nn.Module):
    def forward(self, x, t, labels=None, batch=None):
        return {m: torch.zeros_like(v) for m, v in x.items()}


class _Oracle(torch.nn.Module):
    """Predicts the exact noise or v of latents built from known ``x0`` and ``noise``."""

    def __init__(self, x0, noise, schedule, prediction):
        super().__init__()
        self.x0, self.noise, self.schedule, self.prediction = x0, noise, schedule, prediction

    def forward(self, x, t, labels=None, batch=None):
        if self.prediction == "epsilon":
            return dict(self.noise)
        out = {}
        for m, noise in self.noise.items():
            ab = self.schedule.alpha_bar(t[m]).float().unsqueeze(-1)
            out[m] = ab.sqrt() * noise - (1 - ab).sqrt() * self.x0[m]
        return out


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_prediction_targets_and_the_noise_given_to_samplers(prediction):
    dims = {"rna": 4, "atac": 3}
    diffusion = LatentDiffusion(dims, n_channels=8, prediction=prediction)
    n = 50
    x0, noise = _latents(dims, n), _latents(dims, n)
    t = torch.randint(0, diffusion.schedule.T, (n,))
    diffusion.ema = _Oracle(x0, noise, diffusion.schedule, prediction)
    x_t = {m: diffusion.schedule.q_sample(x0[m], t, noise[m]) for m in dims}
    # whatever the network predicts, the samplers get the noise
    eps = diffusion.labelled_denoiser()(x_t, dict.fromkeys(dims, t), None)
    for m in dims:
        torch.testing.assert_close(eps[m], noise[m], atol=1e-4, rtol=1e-4)


def test_v_loss_weights_the_noise_error_by_the_inverse_signal():
    """The v loss is the noise MSE divided by alpha_bar_t: large at large t, unlike eps."""
    dims = {"rna": 4, "atac": 3}
    x0 = _latents(dims, n=256)
    losses = {}
    for prediction in ("epsilon", "v"):
        diffusion = LatentDiffusion(dims, n_channels=8, prediction=prediction)
        diffusion.denoiser = _Recorder()  # predicts zeros
        generator = torch.Generator().manual_seed(3)
        _, mse, _ = diffusion.loss(x0, generator=generator)
        losses[prediction] = (mse, diffusion.denoiser.t["rna"], diffusion.denoiser.x["rna"])
    (mse_eps, t, x_t), (mse_v, t_v, _) = losses["epsilon"], losses["v"]
    assert torch.equal(t, t_v)
    # zero prediction: the v MSE is mean(v^2) with v = (eps - sqrt(ab) x_t) / sqrt(1 - ab)
    ab = LatentDiffusion(dims).schedule.alpha_bar(t).float().unsqueeze(-1)
    noise = (x_t - ab.sqrt() * x0["rna"]) / (1 - ab).sqrt()
    v = ab.sqrt() * noise - (1 - ab).sqrt() * x0["rna"]
    torch.testing.assert_close(mse_v["rna"], (v**2).mean(-1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mse_eps["rna"], (noise**2).mean(-1), atol=1e-4, rtol=1e-4)


def test_prediction_is_checked():
    with pytest.raises(ValueError, match="prediction"):
        LatentDiffusion({"rna": 2, "atac": 2}, prediction="x0")


def test_v_prediction_learns_to_use_the_condition_at_the_last_step():
    """After brief conditional training, x0 predicted from pure noise follows the source."""
    torch.manual_seed(0)
    n = 2000
    source = torch.randn(n, 4)
    target = source @ torch.randn(4, 3) / 2 + 0.3 * torch.randn(n, 3)
    diffusion = LatentDiffusion(
        {"rna": 4, "atac": 3}, n_channels=8, latent_scaling="per_dim", condition_prob=1.0,
        gaussian_residual=True, prediction="v",
    )  # fmt: skip
    diffusion.fit_scaling({"rna": source, "atac": target})
    x = diffusion.scale({"rna": source, "atac": target})
    optimizer = torch.optim.AdamW(diffusion.denoiser.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, n, (128,), generator=generator)
        loss, _, _ = diffusion.loss({m: v[idx] for m, v in x.items()}, generator=generator)
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()
    diffusion.ema.load_state_dict(diffusion.denoiser.state_dict())
    eps_fn = diffusion.labelled_denoiser()
    t = torch.full((n,), diffusion.schedule.T - 1)
    ab = diffusion.schedule.alpha_bar(t).float().unsqueeze(-1)
    errors = []
    for condition in (x["rna"], x["rna"][torch.randperm(n)]):
        x_t = torch.randn(n, 3)
        with torch.no_grad():
            eps = eps_fn({"rna": condition, "atac": x_t}, {"rna": 0 * t, "atac": t}, None)["atac"]
        x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        errors.append(((x0 - x["atac"]) ** 2).mean())
    assert errors[0] < 0.6 and errors[0] < 0.5 * errors[1]


def test_condition_codes_and_the_null_token():
    diffusion = LatentDiffusion(DIMS, n_labels=3, n_batch=2, n_channels=8)
    null = diffusion.null_condition()
    assert null.tolist() == [3, 2]
    assert diffusion.condition_codes(None, None, 2).tolist() == [[3, 2], [3, 2]]
    codes = diffusion.condition_codes(torch.tensor([0, 2]), 1, 2)
    assert codes.tolist() == [[0, 1], [2, 1]]
    # a denoiser without batch conditioning ignores the batch: the null code stands in
    unbatched = LatentDiffusion(DIMS, n_labels=3, n_channels=8)
    assert unbatched.condition_codes(torch.tensor([1]), 1, 1).tolist() == [[1, 0]]


def test_sample_returns_finite_unscaled_latents_of_the_free_modalities():
    diffusion = LatentDiffusion(DIMS, n_labels=3, n_channels=8).eval()
    diffusion.fit_scaling({m: 5 * torch.randn(50, d) for m, d in DIMS.items()})
    generator = torch.Generator().manual_seed(0)
    out = diffusion.sample("ddim", n_cells=4, n_steps=3, generator=generator)
    assert {m: tuple(v.shape) for m, v in out.items()} == {m: (4, d) for m, d in DIMS.items()}
    source = {"rna": torch.randn(4, DIMS["rna"])}
    given = diffusion.sample("mean", condition=source, labels=torch.tensor([0, 1, 2, 0]))
    assert set(given) == {"atac", "protein"} and all(v.isfinite().all() for v in given.values())
    with pytest.raises(ValueError, match="disagree on the cells"):
        diffusion.sample("mean", n_cells=3, condition=source)


def test_noisy_conditions_are_noised_up_to_condition_noise():
    dims = {"rna": 4, "atac": 3}
    torch.manual_seed(0)
    diffusion = LatentDiffusion(dims, n_channels=8, condition_prob=1.0, condition_noise=300)
    diffusion.denoiser = _Recorder()
    x0 = _latents(dims, n=4000)
    _, _, target = diffusion.loss(x0, generator=torch.Generator().manual_seed(2))
    x, t = diffusion.denoiser.x, diffusion.denoiser.t
    for m in dims:
        cond = ~target[m]
        s = t[m][cond]
        assert s.min() == 0 and s.max() == 300 and abs(s.float().mean() - 150) < 10
        # noised as the forward process at that timestep: the rest is standard normal noise
        ab = diffusion.schedule.alpha_bar(s).float().unsqueeze(-1)
        rest = (x[m][cond] - ab.sqrt() * x0[m][cond]) / (1 - ab).sqrt()
        assert abs(rest.mean()) < 0.05 and abs(rest.var() - 1) < 0.05


@pytest.mark.parametrize("value", [-1, 1000, 2.5])
def test_condition_noise_is_checked(value):
    with pytest.raises(ValueError, match="condition_noise"):
        LatentDiffusion({"rna": 2, "atac": 2}, condition_noise=value)


def test_sampling_gives_each_condition_at_its_timestep():
    dims = {"rna": 4, "atac": 3}
    diffusion = LatentDiffusion(dims, n_channels=8, condition_prob=1.0, condition_noise=400).eval()
    diffusion.fit_scaling({m: 3 * torch.randn(50, d) + 1 for m, d in dims.items()})
    diffusion.ema = recorder = _Recorder()
    source = torch.randn(5, 4)
    scaled = diffusion.scale({"rna": source})["rna"]
    diffusion.condition_timesteps[0] = 200
    for sampler in ("mean", "ddim"):
        diffusion.sample(sampler, condition={"rna": source}, n_steps=2)
        ab = diffusion.schedule.alpha_bar(torch.tensor(200)).float()
        assert (recorder.t["rna"] == 200).all()
        torch.testing.assert_close(recorder.x["rna"], ab.sqrt() * scaled)
    # zero-shot samplers noise the source themselves, at the sampling step
    generator = torch.Generator()
    diffusion.sample("replacement", condition={"rna": source}, n_steps=2, generator=generator)
    assert (recorder.t["rna"] == recorder.t["atac"]).all()
    diffusion.condition_timesteps.zero_()  # clean at t = 0, as without noisy conditions
    diffusion.sample("mean", condition={"rna": source})
    assert (recorder.t["rna"] == 0).all()
    torch.testing.assert_close(recorder.x["rna"], scaled)


def test_a_state_without_condition_timesteps_loads_with_clean_conditions():
    dims = {"rna": 4, "atac": 3}
    state = LatentDiffusion(dims, n_channels=8).state_dict()
    del state["condition_timesteps"]
    diffusion = LatentDiffusion(dims, n_channels=8, condition_noise=100)
    diffusion.condition_timesteps.fill_(7)
    diffusion.load_state_dict(state)
    assert diffusion.condition_timesteps.tolist() == [0, 0]
