"""Noise schedules, samplers (zero-shot translators included) and classifier-free guidance.

Everything here is independent of any model class: the denoiser is a callable
``eps_fn(x, t) -> eps`` on dicts of per-modality tensors (see :mod:`._samplers`).

Examples
--------
>>> import torch
>>> from scdx_scvi.diffusion import NoiseSchedule, get_sampler, sample_noise
>>> schedule = NoiseSchedule.linear(T=1000)
>>> def eps_fn(x, t):  # the optimal denoiser for N(0, I) data predicts eps = sqrt(1 - ab) x
...     return {m: (1 - schedule.alpha_bar(t[m])).sqrt()[:, None].float() * v for m, v in x.items()}
>>> g = torch.Generator().manual_seed(0)
>>> noise = sample_noise({"rna": 4, "atac": 3}, n=8, generator=g)
>>> out = get_sampler("dpm++2m")(eps_fn, noise, schedule, n_steps=20, generator=g)
>>> {m: tuple(v.shape) for m, v in out.items()}
{'rna': (8, 4), 'atac': (8, 3)}
"""

from ._guidance import Denoiser, classifier_free_guidance, combine_guidance, with_labels
from ._registry import SAMPLERS, get_sampler
from ._samplers import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverPP2MSampler,
    MeanSampler,
    Sampler,
    ddpm_step,
)
from ._schedule import NoiseSchedule, spaced_timesteps
from ._utils import EpsFn, randn_like, sample_noise
from ._zero_shot import GuidanceSampler, ReplacementSampler

__all__ = [
    "SAMPLERS",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverPP2MSampler",
    "Denoiser",
    "EpsFn",
    "GuidanceSampler",
    "MeanSampler",
    "NoiseSchedule",
    "ReplacementSampler",
    "Sampler",
    "classifier_free_guidance",
    "combine_guidance",
    "ddpm_step",
    "get_sampler",
    "randn_like",
    "sample_noise",
    "spaced_timesteps",
    "with_labels",
]
