r"""Zero-shot translation with a *joint* diffusion model (the reference's two methods).

Both methods sample the target modalities with ancestral DDPM (:func:`ddpm_step`) from a joint
model :math:`p(x^{src}, x^{tgt})` that was never trained conditionally, while the source
modalities are forced to follow the forward process of the observed clean source :math:`c`
with **one fixed noise draw** :math:`\varepsilon_{src}` (the same at every step):

.. math:: x_i^{src} \leftarrow q(c, i, \varepsilon_{src})
          = \sqrt{\bar\alpha_i}\,c + \sqrt{1-\bar\alpha_i}\,\varepsilon_{src}.

Indices ``i`` run over the (possibly respaced) schedule from ``K - 1`` down to ``0``; the
denoiser receives the original training timestep of ``i``. Any subset of modalities can be the
source; the others (the keys of ``noise`` not in ``source``) are the targets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from ._samplers import ConditionedEps, EpsFn, _progress, ddpm_step, randn_like
from ._schedule import NoiseSchedule, Spacing, spaced_timesteps


def _prepare(
    source: Mapping[str, Tensor],
    noise: Mapping[str, Tensor],
    generator: torch.Generator | None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], list[str]]:
    if generator is None:
        raise ValueError("Translation uses DDPM sampling and needs a torch.Generator.")
    if not source:
        raise ValueError("`source` must contain at least one modality.")
    targets = {m: v for m, v in noise.items() if m not in source}
    if not targets:
        raise ValueError("No target modality: every key of `noise` is also in `source`.")
    eps_src = {}
    for m, c in source.items():
        e = noise[m] if m in noise else randn_like(c, generator)
        if e.shape != c.shape:
            raise ValueError(f"noise[{m!r}] has shape {tuple(e.shape)}, source {tuple(c.shape)}.")
        eps_src[m] = e
    sizes = {m: v.shape[0] for m, v in (*targets.items(), *source.items())}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"All modalities must have the same batch size, got {sizes}.")
    keys = list(noise) + [m for m in source if m not in noise]
    return dict(targets), eps_src, keys


def _respaced(schedule: NoiseSchedule, n_steps: int | None, spacing: Spacing) -> NoiseSchedule:
    n = len(schedule) if n_steps is None else int(n_steps)
    return schedule.respace(spaced_timesteps(len(schedule), n, spacing))


def replacement_translate(
    eps_fn: EpsFn,
    source: Mapping[str, Tensor],
    noise: Mapping[str, Tensor],
    schedule: NoiseSchedule,
    n_steps: int | None = None,
    generator: torch.Generator | None = None,
    clip_x0: float | None = None,
    variance: Literal["fixed_large", "fixed_small"] = "fixed_large",
    spacing: Spacing = "linspace",
    progress: bool = False,
) -> dict[str, Tensor]:
    r"""Translate by "replacement" (the reference's ``classifier_scale == 0`` branch).

    At every step ``i = K-1, ..., 0``:

    .. math::
        x_i^{src} &\leftarrow \sqrt{\bar\alpha_i}\,c + \sqrt{1-\bar\alpha_i}\,\varepsilon_{src}
        \quad(\text{same } \varepsilon_{src} \text{ at every step}) \\
        x_{i-1} &= \text{ddpm\_step}(x_i, \hat\varepsilon(x_i, i))
        \quad(\text{both streams; the source part is discarded at the next step})

    Parameters
    ----------
    eps_fn
        Joint denoiser ``eps_fn(x, t) -> eps`` over all modalities.
    source
        Clean source modalities :math:`c`, ``{m: (B, d_m)}``.
    noise
        Initial noise: the targets' :math:`x_{K-1}` and, for source modalities present, the fixed
        :math:`\varepsilon_{src}` (drawn from ``generator`` when missing).
    schedule
        Training schedule; respaced to ``n_steps`` (default: all ``T`` steps, as the reference).
    n_steps, spacing
        Respacing, see :class:`DDPMSampler`.
    generator
        Required; source of all sampling noise.
    clip_x0, variance
        As in :class:`DDPMSampler` (the reference clips at ``1.0``).
    progress
        Show a tqdm progress bar.

    Returns
    -------
    dict[str, Tensor]
        Sampled targets and the clean source tensors (unchanged), keys in the order of ``noise``
        then source-only keys.
    """
    x, eps_src, keys = _prepare(source, noise, generator)
    sched = _respaced(schedule, n_steps, spacing)
    eps = ConditionedEps(eps_fn, {}, keys)
    with torch.no_grad():
        for i in _progress(range(len(sched) - 1, -1, -1), progress, "replacement"):
            for m, c in source.items():
                x[m] = sched.q_sample(c, i, eps_src[m])
            state = {m: x[m] for m in keys}
            e = eps(state, int(sched.timestep_map[i]))
            x, _ = ddpm_step(sched, i, state, e, generator, clip_x0, variance)
    return {m: source[m] if m in source else x[m] for m in keys}


def guidance_translate(
    eps_fn: EpsFn,
    source: Mapping[str, Tensor],
    noise: Mapping[str, Tensor],
    schedule: NoiseSchedule,
    n_steps: int | None = None,
    generator: torch.Generator | None = None,
    scale: float = 3.0,
    batch_reduction: Literal["mean", "sum"] = "mean",
    clip_x0: float | None = None,
    variance: Literal["fixed_large", "fixed_small"] = "fixed_large",
    spacing: Spacing = "linspace",
    progress: bool = False,
) -> dict[str, Tensor]:
    r"""Translate by reconstruction-gradient guidance (the reference's ``classifier_scale > 0``).

    At every step ``i = K-1, ..., 0``, with :math:`q(c, j) = \sqrt{\bar\alpha_j}\,c +
    \sqrt{1-\bar\alpha_j}\,\varepsilon_{src}` (fixed :math:`\varepsilon_{src}`):

    .. math::
        x_i^{src} &\leftarrow q(c, i) \\
        \tilde x_{i-1} &= \text{ddpm\_step}(x_i, \hat\varepsilon(x_i, i))
            \quad(\text{differentiable in } x_i^{tgt}) \\
        L_b &= \sum_{m \in src} \operatorname{mean}_d
               \big(\tilde x_{i-1}^{m} - q(c^m, i-1)\big)^2_b
            \quad\text{per cell } b \\
        x_{i-1}^{tgt} &= \tilde x_{i-1}^{tgt} - \mathbb 1[i>0]\;\text{scale}\;
               \sqrt{\bar\alpha_i}\;\nabla_{x_i^{tgt}} R(L)

    where :math:`R` is the batch reduction: ``"mean"`` (:math:`\frac1B\sum_b L_b`, what the
    reference does, so the per-cell step shrinks as :math:`1/B` and ``scale = 3`` was tuned for
    its batch of 640) or ``"sum"`` (:math:`\sum_b L_b`, batch-size independent; equivalent to
    ``"mean"`` with ``scale * B``). The gradient reaches the targets only through the denoiser's
    cross-modal paths; if there is none it is zero and the result equals replacement sampling
    with the same noise.

    Parameters
    ----------
    eps_fn
        Joint denoiser; must be differentiable with respect to its inputs.
    source, noise, schedule, n_steps, generator, clip_x0, variance, spacing, progress
        As in :func:`replacement_translate`.
    scale
        Guidance scale (reference: ``3.0``). ``0`` gives replacement sampling.
    batch_reduction
        ``"mean"`` (reference, default) or ``"sum"``, see above.

    Returns
    -------
    dict[str, Tensor]
        Sampled targets (detached) and the clean source tensors (unchanged).
    """
    if batch_reduction not in ("mean", "sum"):
        raise ValueError(f"batch_reduction must be 'mean' or 'sum', got {batch_reduction!r}.")
    x, eps_src, keys = _prepare(source, noise, generator)
    targets = [m for m in keys if m not in source]
    sched = _respaced(schedule, n_steps, spacing)
    eps = ConditionedEps(eps_fn, {}, keys)
    with torch.no_grad():
        for i in _progress(range(len(sched) - 1, -1, -1), progress, "guidance"):
            for m, c in source.items():
                x[m] = sched.q_sample(c, i, eps_src[m])
            with torch.enable_grad():
                leaves = {m: x[m].detach().requires_grad_(True) for m in targets}
                state = {m: leaves.get(m, x[m]) for m in keys}
                e = eps(state, int(sched.timestep_map[i]))
                x_prev, _ = ddpm_step(sched, i, state, e, generator, clip_x0, variance)
                grads: list[Tensor | None] = [None] * len(targets)
                if i > 0 and scale != 0:
                    per_cell = sum(
                        (x_prev[m] - sched.q_sample(c, i - 1, eps_src[m])).pow(2).flatten(1).mean(1)
                        for m, c in source.items()
                    )
                    loss = per_cell.mean() if batch_reduction == "mean" else per_cell.sum()
                    if loss.requires_grad:
                        grads = list(
                            torch.autograd.grad(
                                loss, [leaves[m] for m in targets], allow_unused=True
                            )
                        )
            step = scale * math.sqrt(float(sched.alphas_cumprod[i]))
            x = {}
            for m, g in zip(targets, grads, strict=True):
                x[m] = x_prev[m].detach() if g is None else x_prev[m].detach() - step * g
    return {m: source[m] if m in source else x[m] for m in keys}
