r"""Folding labels and classifier-free guidance into an ``eps_fn``.

A *labelled denoiser* is a callable ``denoiser(x, t, labels) -> eps`` with ``x`` and ``t`` as for
``eps_fn`` (dicts of per-modality tensors) and ``labels`` a ``(B,)`` (or ``(B, k)``) integer tensor,
or ``None`` for an unconditional model. The helpers here turn it into the two-argument
``eps_fn(x, t)`` that the samplers call.

Guidance convention (Ho & Salimans, 2022, written as in most diffusion libraries):

.. math:: \hat\varepsilon = \hat\varepsilon_\varnothing
          + w\,(\hat\varepsilon_c - \hat\varepsilon_\varnothing)

so ``w = 0`` is the unconditional model, ``w = 1`` the plain conditional model and ``w > 1``
strengthens the condition (``w = 1 + s`` in the "s" convention of the original paper).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from ._utils import EpsFn

Denoiser = Callable[[dict[str, Tensor], dict[str, Tensor], Tensor | None], dict[str, Tensor]]
"""``denoiser(x, t, labels) -> eps``."""


def combine_guidance(
    eps_cond: Mapping[str, Tensor], eps_uncond: Mapping[str, Tensor], scale: float
) -> dict[str, Tensor]:
    r"""Combine conditional and unconditional predictions with guidance scale ``w``.

    .. math:: \hat\varepsilon_\varnothing + w\,(\hat\varepsilon_c - \hat\varepsilon_\varnothing)

    Parameters
    ----------
    eps_cond, eps_uncond
        Conditional and unconditional predictions, ``{m: (B, d_m)}`` with the same keys.
    scale
        Guidance scale ``w``.
    """
    return {m: eps_uncond[m] + scale * (eps_cond[m] - eps_uncond[m]) for m in eps_cond}


def with_labels(denoiser: Denoiser, labels: Tensor | None) -> EpsFn:
    """Bind ``labels`` to a labelled denoiser (plain conditional or unconditional sampling).

    Returns
    -------
    EpsFn
        ``eps_fn(x, t) = denoiser(x, t, labels)``.
    """

    def eps_fn(x: dict[str, Tensor], t: dict[str, Tensor]) -> dict[str, Tensor]:
        return denoiser(x, t, labels)

    return eps_fn


def classifier_free_guidance(
    denoiser: Denoiser,
    labels: Tensor,
    null_label: int | Tensor,
    guidance_scale: float,
    batched: bool = True,
) -> EpsFn:
    r"""Build a classifier-free-guided ``eps_fn`` from a labelled denoiser.

    The returned function computes

    .. math:: \hat\varepsilon(x, t) = \hat\varepsilon(x, t, \varnothing)
              + w\,\big(\hat\varepsilon(x, t, c) - \hat\varepsilon(x, t, \varnothing)\big)

    with :math:`c` = ``labels`` and :math:`\varnothing` = ``null_label`` (the label the model was
    trained with under label dropout). ``w = 1`` calls the denoiser once with ``labels`` only.

    Parameters
    ----------
    denoiser
        ``denoiser(x, t, labels) -> eps``.
    labels
        Conditioning labels, ``(B,)`` or ``(B, k)``.
    null_label
        The null ("unconditional") label, broadcast to the shape of ``labels``.
    guidance_scale
        ``w`` (see the module docstring for the convention).
    batched
        If ``True`` (default), evaluate the conditional and unconditional predictions in one
        denoiser call on a batch of size ``2B`` (inputs concatenated along dimension 0, the
        conditional half first); otherwise make two calls (half the peak memory).

    Returns
    -------
    EpsFn
        ``eps_fn(x, t) -> eps``.
    """
    w = float(guidance_scale)
    if w == 1.0:
        return with_labels(denoiser, labels)
    null = torch.as_tensor(null_label, dtype=labels.dtype, device=labels.device).expand_as(labels)

    def eps_fn(x: dict[str, Tensor], t: dict[str, Tensor]) -> dict[str, Tensor]:
        if batched:
            b = labels.shape[0]
            out = denoiser(
                {m: torch.cat([v, v]) for m, v in x.items()},
                {m: torch.cat([v, v]) for m, v in t.items()},
                torch.cat([labels, null]),
            )
            cond = {m: v[:b] for m, v in out.items()}
            uncond = {m: v[b:] for m, v in out.items()}
        else:
            cond = denoiser(x, t, labels)
            uncond = denoiser(x, t, null)
        return combine_guidance(cond, uncond, w)

    return eps_fn
