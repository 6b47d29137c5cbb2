"""Helpers shared by the samplers: noise draws, conditioned denoiser calls, state handling."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

EpsFn = Callable[[dict[str, Tensor], dict[str, Tensor]], dict[str, Tensor]]
"""``eps_fn(x, t) -> eps``: per-modality noise prediction for per-modality timesteps."""


def randn_like(x: Tensor, generator: torch.Generator) -> Tensor:
    """Draw a standard normal tensor shaped like ``x`` from ``generator`` only.

    Raises
    ------
    ValueError
        If the generator lives on another device type than ``x``.
    """
    if generator.device.type != x.device.type:
        raise ValueError(
            f"generator is on {generator.device} but the data is on {x.device}; create the "
            f"generator with torch.Generator(device={str(x.device)!r})."
        )
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def sample_noise(
    dims: Mapping[str, int | tuple[int, ...]],
    n: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """Draw an initial noise dict ``{m: (n, *dims[m])}`` on the generator's device.

    Modalities are drawn in the order of ``dims``, so the same seed gives the same noise.
    """
    out = {}
    for m, d in dims.items():
        shape = (n, *((d,) if isinstance(d, int) else tuple(d)))
        out[m] = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return out


def progress_bar(it: Iterable, enable: bool, desc: str) -> Iterable:
    """Wrap ``it`` in a tqdm progress bar labelled ``desc`` when ``enable`` is true."""
    if not enable:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc)


def clamp_x0(x0: Tensor, clip_x0: float | None) -> Tensor:
    """Clamp a predicted clean sample to ``[-clip_x0, clip_x0]`` (``None``: unchanged)."""
    return x0 if clip_x0 is None else x0.clamp(-clip_x0, clip_x0)


class ConditionedEps:
    """Wrap ``eps_fn`` so that it is called with the full state, clean conditions at ``t = 0``.

    Parameters
    ----------
    eps_fn
        The denoiser callable.
    condition
        Clean modalities held fixed (may be empty).
    keys
        Order of the modalities in the dict passed to ``eps_fn``.
    """

    def __init__(self, eps_fn: EpsFn, condition: Mapping[str, Tensor], keys: Iterable[str]):
        self.eps_fn = eps_fn
        self.condition = dict(condition)
        self.keys = list(keys)

    def __call__(self, x: Mapping[str, Tensor], t: float | int | Tensor) -> dict[str, Tensor]:
        """Evaluate at scalar (or ``(B,)``) timestep ``t`` for the free modalities ``x``.

        Integer ``t`` becomes a ``long`` tensor and float ``t`` a ``float32`` tensor of shape
        ``(B,)``; conditions get zeros of the same dtype. Returns the free modalities' eps.
        """
        ref = next(iter(x.values()))
        b = ref.shape[0]
        if isinstance(t, Tensor):
            tt = t.to(ref.device).expand(b) if t.ndim == 0 else t.to(ref.device)
        elif isinstance(t, int | np.integer):
            tt = torch.full((b,), int(t), dtype=torch.long, device=ref.device)
        else:
            tt = torch.full((b,), float(t), dtype=torch.float32, device=ref.device)
        zeros = torch.zeros_like(tt)
        xs, ts = {}, {}
        for m in self.keys:
            if m in self.condition:
                xs[m], ts[m] = self.condition[m], zeros
            else:
                xs[m], ts[m] = x[m], tt
        eps = self.eps_fn(xs, ts)
        out = {}
        for m, xm in x.items():
            if m not in eps:
                raise KeyError(f"eps_fn returned no prediction for modality {m!r}.")
            if eps[m].shape != xm.shape:
                raise ValueError(
                    f"eps_fn returned shape {tuple(eps[m].shape)} for {m!r}, "
                    f"expected {tuple(xm.shape)}."
                )
            out[m] = eps[m]
        return out


def split_state(
    noise: Mapping[str, Tensor], condition: Mapping[str, Tensor] | None
) -> tuple[dict[str, Tensor], dict[str, Tensor], list[str]]:
    """Split the input into free (sampled) and conditioned modalities; check batch sizes.

    Returns
    -------
    free, condition, keys
        ``keys`` is the order of the output: the keys of ``noise``, then condition-only keys.
    """
    condition = dict(condition or {})
    keys = list(noise) + [m for m in condition if m not in noise]
    free = {m: v for m, v in noise.items() if m not in condition}
    if not free:
        raise ValueError("Nothing to sample: every modality of `noise` is in `condition`.")
    sizes = {m: v.shape[0] for m, v in (*free.items(), *condition.items())}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"All modalities must have the same batch size, got {sizes}.")
    return free, condition, keys


def merge_state(
    keys: list[str], free: Mapping[str, Tensor], condition: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Reassemble the output dict in the order ``keys``."""
    return {m: condition[m] if m in condition else free[m] for m in keys}
