"""Samplers by name (the names that the model's ``sampler=`` and ``method=`` arguments take)."""

from __future__ import annotations

from typing import Literal

from ._samplers import DDIMSampler, DDPMSampler, DPMSolverPP2MSampler, MeanSampler, Sampler
from ._zero_shot import GuidanceSampler, ReplacementSampler

SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls
    for cls in (
        DDPMSampler,
        DDIMSampler,
        DPMSolverPP2MSampler,
        MeanSampler,
        ReplacementSampler,
        GuidanceSampler,
    )
}

SamplerName = Literal["ddpm", "ddim", "dpm++2m", "mean", "replacement", "guidance"]


def get_sampler(name: SamplerName, **kwargs) -> Sampler:
    """Instantiate a sampler by name.

    Parameters
    ----------
    name
        ``"ddpm"`` (:class:`DDPMSampler`), ``"ddim"`` (:class:`DDIMSampler`), ``"dpm++2m"``
        (:class:`DPMSolverPP2MSampler`), ``"mean"`` (:class:`MeanSampler`), or the zero-shot
        translators ``"replacement"`` (:class:`ReplacementSampler`) and ``"guidance"``
        (:class:`GuidanceSampler`).
    **kwargs
        Passed to the sampler's constructor (e.g. ``eta`` for DDIM, ``clip_x0``).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid names.
    """
    try:
        cls = SAMPLERS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in SAMPLERS)
        raise ValueError(f"Unknown sampler {name!r}; valid names are {valid}.") from None
    return cls(**kwargs)
