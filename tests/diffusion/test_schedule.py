from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scdx_scvi.diffusion import NoiseSchedule, spaced_timesteps


def test_linear_endpoints_and_scaling():
    s = NoiseSchedule.linear()
    assert s.T == len(s) == 1000
    assert s.betas[0].item() == pytest.approx(1e-4)
    assert s.betas[-1].item() == pytest.approx(0.02)
    assert s.betas.dtype == torch.float64
    half = NoiseSchedule.linear(T=500)
    assert half.betas[0].item() == pytest.approx(2e-4)
    assert half.betas[-1].item() == pytest.approx(0.04)
    # 1000/T scaling keeps the terminal signal level comparable
    assert half.alphas_cumprod[-1].item() == pytest.approx(s.alphas_cumprod[-1].item(), rel=0.5)


@pytest.mark.parametrize("schedule", [NoiseSchedule.linear(), NoiseSchedule.cosine()])
def test_alphas_cumprod_monotone(schedule):
    ab = schedule.alphas_cumprod
    assert bool((ab[1:] < ab[:-1]).all())
    assert 0 < ab[-1].item() < 1e-3 and ab[0].item() > 0.99
    assert schedule.alphas_cumprod_prev[0].item() == 1.0
    assert torch.equal(schedule.alphas_cumprod_prev[1:], ab[:-1])
    lsnr = schedule.log_snr(torch.arange(schedule.T))
    assert bool((lsnr[1:] < lsnr[:-1]).all())


def test_from_name():
    assert torch.equal(NoiseSchedule.from_name("linear").betas, NoiseSchedule.linear().betas)
    assert torch.equal(
        NoiseSchedule.from_name("cosine", 100).betas, NoiseSchedule.cosine(100).betas
    )
    with pytest.raises(ValueError, match="linear"):
        NoiseSchedule.from_name("sigmoid")


def test_invalid_betas():
    with pytest.raises(ValueError):
        NoiseSchedule([0.1, 1.5])
    with pytest.raises(ValueError):
        NoiseSchedule([])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_q_sample_predict_inverse(dtype):
    s = NoiseSchedule.linear()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 5, generator=g, dtype=dtype)
    noise = torch.randn(6, 5, generator=g, dtype=dtype)
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    xt = s.q_sample(x0, t, noise)
    assert xt.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    # x0 recovery divides by sqrt(alpha_bar) ~ 6e-3 at t = 999: compare relative to 1/sqrt(ab)
    rec = s.predict_x0(xt, t, noise)
    scale = s.alpha_bar(t).rsqrt()[:, None].to(dtype)
    assert torch.allclose(rec / scale, x0 / scale, atol=tol)
    assert torch.allclose(s.predict_eps(xt, t, x0), noise, atol=tol * 100)
    # scalar timesteps and explicit formula
    xt5 = s.q_sample(x0, 5, noise)
    ab = s.alphas_cumprod[5].item()
    assert torch.allclose(xt5, math.sqrt(ab) * x0 + math.sqrt(1 - ab) * noise, atol=tol)


def test_alpha_bar_float_interpolation():
    s = NoiseSchedule.linear()
    ints = torch.tensor([0, 3, 500, 999])
    assert torch.allclose(s.alpha_bar(ints.double()), s.alphas_cumprod[ints], rtol=1e-12)
    assert torch.equal(s.alpha_bar(ints), s.alphas_cumprod[ints])
    mid = s.alpha_bar(torch.tensor([3.5]))
    geo = (s.alphas_cumprod[3] * s.alphas_cumprod[4]).sqrt()  # log-linear interpolation
    assert mid.item() == pytest.approx(geo.item(), rel=1e-12)
    with pytest.raises(ValueError):
        s.alpha_bar(torch.tensor([1000]))


def test_log_snr_inverse():
    s = NoiseSchedule.linear()
    t = torch.tensor([0.0, 0.25, 17.5, 400.0, 998.9, 999.0], dtype=torch.float64)
    back = s.timestep_from_log_snr(s.log_snr(t))
    assert torch.allclose(back, t, atol=1e-6)
    lsnr = s.log_snr(t)
    ab = s.alpha_bar(t)
    assert torch.allclose(lsnr, torch.log(ab / (1 - ab)))


def test_spaced_timesteps():
    lin = spaced_timesteps(1000, 100)
    assert len(lin) == 100 and lin[0] == 0 and lin[-1] == 999
    assert bool((lin[1:] > lin[:-1]).all())
    assert torch.equal(spaced_timesteps(1000, 1000), torch.arange(1000))
    lead = spaced_timesteps(1000, 50, "leading")
    assert lead[0] == 0 and lead[1] == 20 and len(lead) == 50
    trail = spaced_timesteps(1000, 50, "trailing")
    assert trail[-1] == 999 and len(trail) == 50 and trail[0] == 19
    assert spaced_timesteps(1000, 1).tolist() == [999]
    with pytest.raises(ValueError):
        spaced_timesteps(1000, 1001)
    with pytest.raises(ValueError):
        spaced_timesteps(1000, 10, "quadratic")


def test_respace():
    s = NoiseSchedule.linear()
    full = s.respace(torch.arange(1000))
    assert torch.allclose(full.betas, s.betas, rtol=1e-10)
    keep = spaced_timesteps(1000, 10)
    r = s.respace(keep)
    assert len(r) == 10
    assert torch.equal(r.timestep_map, keep)
    assert torch.allclose(r.alphas_cumprod, s.alphas_cumprod[keep], rtol=1e-12)
    # betas follow 1 - ab_k / ab_{k-1}
    ab = s.alphas_cumprod[keep].numpy()
    expected = 1 - ab / np.concatenate([[1.0], ab[:-1]])
    assert np.allclose(r.betas.numpy(), expected)
    # nested respacing composes the maps
    rr = r.respace([0, 9])
    assert rr.timestep_map.tolist() == [0, 999]
    assert torch.allclose(rr.alphas_cumprod, s.alphas_cumprod[[0, 999]], rtol=1e-12)
