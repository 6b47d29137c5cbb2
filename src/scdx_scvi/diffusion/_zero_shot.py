r"""Zero-shot translation with a *joint* diffusion model (the reference's two methods).

Both samplers draw the target modalities with ancestral DDPM
(:func:`~scdx_scvi.diffusion.ddpm_step`) from a joint model :math:`p(x^{src}, x^{tgt})` that
was never trained conditionally, while the source modalities (``condition``) are forced to
follow the forward process of the observed clean source :math:`c` with **one fixed noise
draw** :math:`\varepsilon_{src}` (the same at every step):

.. math:: x_i^{src} \leftarrow q(c, i, \varepsilon_{src})
          = \sqrt{\bar\alpha_i}\,c + \sqrt{1-\bar\alpha_i}\,\varepsilon_{src}.

Indices ``i`` run over the (possibly respaced) schedule from ``K - 1`` down to ``0``; the
denoiser receives the original training timestep of ``i``. Any subset of modalities can be the
source; the others (the keys of ``noise`` not in ``condition``) are the targets. The call
signature is that of every :class:`~scdx_scvi.diffusion.Sampler`; the entries of ``noise`` for
source modalities, when present, are :math:`\varepsilon_{src}` (otherwise it is drawn from the
generator).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from ._samplers import DDPMSampler, ddpm_step
from ._schedule import NoiseSchedule, Spacing, spaced_timesteps
from ._utils import ConditionedEps, EpsFn, merge_state, progress_bar, randn_like, split_state


class ReplacementSampler(DDPMSampler):
    r"""Translate by "replacement" (the reference's ``classifier_scale == 0`` branch).

    At every step ``i = K-1, ..., 0``:

    .. math::
        x_i^{src} &\leftarrow \sqrt{\bar\alpha_i}\,c + \sqrt{1-\bar\alpha_i}\,\varepsilon_{src}
        \quad(\text{same } \varepsilon_{src} \text{ at every step}) \\
        x_{i-1} &= \text{ddpm\_step}(x_i, \hat\varepsilon(x_i, i))
        \quad(\text{both streams; the source part is discarded at the next step})

    The sampling is :class:`~scdx_scvi.diffusion.DDPMSampler`'s, whose options it takes (the
    reference clips at ``clip_x0=1.0``); ``n_steps`` respaces the schedule in the same way
    (default: all ``T`` steps, as the reference).
    """

    name = "replacement"
    zero_shot = True

    def __call__(
        self,
        eps_fn: EpsFn,
        noise: Mapping[str, Tensor],
        schedule: NoiseSchedule,
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
        condition: Mapping[str, Tensor] | None = None,
        progress: bool = False,
    ) -> dict[str, Tensor]:
        """Translate the clean ``condition`` (the source) into the other keys of ``noise``.

        Parameters and return value as :meth:`~scdx_scvi.diffusion.Sampler.__call__`;
        ``condition`` and ``generator`` are required.
        """
        if not condition:
            raise ValueError(
                f"{type(self).__name__} translates: give the source modalities as `condition`."
            )
        if generator is None:
            raise ValueError(f"{type(self).__name__} is stochastic and needs a torch.Generator.")
        x, source, keys = split_state(noise, condition)
        n = self.resolve_steps(n_steps, schedule)
        eps_src = {}
        for m, c in source.items():
            e = noise[m] if m in noise else randn_like(c, generator)
            if e.shape != c.shape:
                raise ValueError(
                    f"noise[{m!r}] has shape {tuple(e.shape)}, condition {tuple(c.shape)}."
                )
            eps_src[m] = e
        sched = schedule.respace(spaced_timesteps(len(schedule), n, self.spacing))
        eps = ConditionedEps(eps_fn, {}, keys)
        with torch.no_grad():
            for i in progress_bar(range(len(sched) - 1, -1, -1), progress, self.name):
                for m, c in source.items():
                    x[m] = sched.q_sample(c, i, eps_src[m])
                state = {m: x[m] for m in keys}
                x = self._step(eps, sched, i, state, source, eps_src, generator)
        return merge_state(keys, x, source)

    def _step(
        self,
        eps: ConditionedEps,
        sched: NoiseSchedule,
        i: int,
        state: dict[str, Tensor],
        source: Mapping[str, Tensor],
        eps_src: Mapping[str, Tensor],
        generator: torch.Generator,
    ) -> dict[str, Tensor]:
        """One ancestral step of the whole state; returns at least the targets."""
        e = eps(state, int(sched.timestep_map[i]))
        x, _ = ddpm_step(sched, i, state, e, generator, self.clip_x0, self.variance)
        return x


class GuidanceSampler(ReplacementSampler):
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
    with the same noise. The denoiser must be differentiable with respect to its inputs.

    Parameters
    ----------
    scale
        Guidance scale (reference: ``3.0``). ``0`` gives replacement sampling.
    batch_reduction
        ``"mean"`` (reference, default) or ``"sum"``, see above.
    clip_x0, variance, spacing
        As in :class:`~scdx_scvi.diffusion.ReplacementSampler`.
    """

    name = "guidance"

    def __init__(
        self,
        scale: float = 3.0,
        batch_reduction: Literal["mean", "sum"] = "mean",
        clip_x0: float | None = None,
        variance: Literal["fixed_large", "fixed_small"] = "fixed_large",
        spacing: Spacing = "linspace",
    ):
        super().__init__(clip_x0, variance, spacing)
        if batch_reduction not in ("mean", "sum"):
            raise ValueError(f"batch_reduction must be 'mean' or 'sum', got {batch_reduction!r}.")
        self.scale = float(scale)
        self.batch_reduction = batch_reduction

    def _step(self, eps, sched, i, state, source, eps_src, generator):
        """One ancestral step, then the reconstruction-gradient step of the targets."""
        targets = [m for m in state if m not in source]
        with torch.enable_grad():
            leaves = {m: state[m].detach().requires_grad_(True) for m in targets}
            state = {m: leaves.get(m, v) for m, v in state.items()}
            e = eps(state, int(sched.timestep_map[i]))
            x_prev, _ = ddpm_step(sched, i, state, e, generator, self.clip_x0, self.variance)
            grads: list[Tensor | None] = [None] * len(targets)
            if i > 0 and self.scale != 0:
                per_cell = sum(
                    (x_prev[m] - sched.q_sample(c, i - 1, eps_src[m])).pow(2).flatten(1).mean(1)
                    for m, c in source.items()
                )
                loss = per_cell.mean() if self.batch_reduction == "mean" else per_cell.sum()
                if loss.requires_grad:
                    grads = list(
                        torch.autograd.grad(loss, [leaves[m] for m in targets], allow_unused=True)
                    )
        step = self.scale * math.sqrt(float(sched.alphas_cumprod[i]))
        return {
            m: x_prev[m].detach() if g is None else x_prev[m].detach() - step * g
            for m, g in zip(targets, grads, strict=True)
        }
