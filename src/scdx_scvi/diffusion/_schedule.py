"""Discrete-time Gaussian noise schedules (variance preserving, epsilon parameterisation)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

Spacing = Literal["linspace", "leading", "trailing"]
_SPACINGS = ("linspace", "leading", "trailing")


def spaced_timesteps(n_train: int, n_steps: int, spacing: Spacing = "linspace") -> Tensor:
    """Choose ``n_steps`` of the ``n_train`` training timesteps ``0, ..., n_train - 1``.

    Parameters
    ----------
    n_train
        Number of training timesteps ``T``.
    n_steps
        Number of timesteps to keep, ``1 <= n_steps <= T``.
    spacing
        * ``"linspace"``: ``round(i * (T - 1) / (n_steps - 1))`` for ``i = 0, ..., n_steps - 1``,
          i.e. evenly spaced and always containing both ``0`` and ``T - 1`` (what the
          ``timestep_respacing="N"`` option of the reference does). ``n_steps = 1`` keeps ``T - 1``.
        * ``"leading"``: ``i * (T // n_steps)``; contains ``0`` but usually not ``T - 1``.
        * ``"trailing"``: ``T - 1 - round(i * T / n_steps)``; contains ``T - 1`` but usually not
          ``0``.

    Returns
    -------
    Tensor
        Sorted, unique timesteps, shape ``(n_steps,)``, dtype ``long``, in **ascending** order.
    """
    if not 1 <= n_steps <= n_train:
        raise ValueError(f"n_steps must be in [1, {n_train}], got {n_steps}.")
    if spacing == "linspace":
        if n_steps == 1:
            steps = np.array([n_train - 1])
        else:
            steps = np.round(np.linspace(0, n_train - 1, n_steps))
    elif spacing == "leading":
        steps = np.arange(n_steps) * (n_train // n_steps)
    elif spacing == "trailing":
        steps = n_train - 1 - np.round(np.arange(n_steps) * n_train / n_steps)
    else:
        raise ValueError(f"spacing must be one of {_SPACINGS}, got {spacing!r}.")
    steps = np.unique(steps.astype(np.int64))
    if len(steps) != n_steps:  # pragma: no cover - guarded by n_steps <= n_train
        raise RuntimeError("timestep spacing produced duplicate steps.")
    return torch.from_numpy(steps)


class NoiseSchedule:
    r"""Variance-preserving discrete noise schedule :math:`\beta_1, \dots, \beta_T`.

    Timesteps are 0-based: index ``t`` in ``0, ..., T - 1`` refers to the ``(t + 1)``-th
    :math:`\beta` (the convention of the denoiser's time embedding). With
    :math:`\alpha_t = 1 - \beta_t` and :math:`\bar\alpha_t = \prod_{s \le t} \alpha_s`, the forward
    process is

    .. math:: x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \varepsilon,
              \qquad \varepsilon \sim \mathcal N(0, I).

    Design: this is a plain object, not an :class:`torch.nn.Module`. All tables are stored once in
    ``float64`` on the CPU; methods that take a timestep tensor move the needed table to that
    tensor's device on demand (cached per device) and cast the result to the data's dtype. There
    is therefore nothing to register or to save in a checkpoint beyond the constructor arguments
    (``betas`` and ``timestep_map``).

    A schedule obtained by :meth:`respace` keeps only some of the original timesteps; its own
    indices run over ``0, ..., len(schedule) - 1`` and :attr:`timestep_map` gives the original
    timestep to pass to the denoiser for each of them.

    Parameters
    ----------
    betas
        The :math:`\beta_t`, shape ``(T,)``, each in ``(0, 1]``.
    timestep_map
        Original (training) timestep of each index, shape ``(T,)``; defaults to ``arange(T)``.

    Attributes
    ----------
    betas, alphas, alphas_cumprod, alphas_cumprod_prev
        ``float64`` CPU tensors of shape ``(T,)``; ``alphas_cumprod_prev[0] = 1``.
    timestep_map
        ``long`` CPU tensor of shape ``(T,)``.
    """

    def __init__(
        self, betas: Tensor | np.ndarray | Sequence[float], timestep_map: Tensor | None = None
    ):
        betas = torch.as_tensor(np.asarray(betas, dtype=np.float64))
        if betas.ndim != 1 or len(betas) == 0:
            raise ValueError("betas must be a non-empty 1-d sequence.")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must lie in (0, 1].")
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.alphas_cumprod_prev = torch.cat([betas.new_ones(1), self.alphas_cumprod[:-1]])
        if timestep_map is None:
            timestep_map = torch.arange(len(betas))
        self.timestep_map = torch.as_tensor(timestep_map, dtype=torch.long).cpu()
        if self.timestep_map.shape != betas.shape:
            raise ValueError("timestep_map must have the same length as betas.")
        self._log_ab = torch.log(self.alphas_cumprod)
        self._device_tables: dict[tuple[str, torch.device], Tensor] = {}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def linear(
        cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> NoiseSchedule:
        r"""Linear :math:`\beta` from ``beta_start`` to ``beta_end`` (the reference schedule).

        As in guided-diffusion, both end points are multiplied by ``1000 / T`` so that schedules
        with a different number of steps have roughly the same :math:`\bar\alpha_{T-1}`.
        """
        scale = 1000.0 / T
        return cls(np.linspace(beta_start * scale, beta_end * scale, T, dtype=np.float64))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        r"""Cosine schedule, :math:`\bar\alpha(u) = \cos^2(\frac{u + s}{1 + s}\frac{\pi}{2})`.

        :math:`\beta_t = \min(1 - \bar\alpha((t+1)/T) / \bar\alpha(t/T), \text{max\_beta})`
        (Nichol & Dhariwal, 2021).
        """

        def f(u: float) -> float:
            return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

        betas = [min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)]
        return cls(betas)

    @classmethod
    def from_name(cls, name: Literal["linear", "cosine"], T: int = 1000) -> NoiseSchedule:
        """Build the ``"linear"`` (reference) or ``"cosine"`` schedule with default parameters."""
        if name == "linear":
            return cls.linear(T)
        if name == "cosine":
            return cls.cosine(T)
        raise ValueError(f"Unknown schedule {name!r}; valid names are 'linear', 'cosine'.")

    def respace(self, timesteps: Tensor | Sequence[int]) -> NoiseSchedule:
        r"""Schedule restricted to a subset of timesteps (guided-diffusion respacing).

        For kept timesteps :math:`\tau_0 < \dots < \tau_{K-1}` the new betas are
        :math:`\beta'_k = 1 - \bar\alpha_{\tau_k} / \bar\alpha_{\tau_{k-1}}` with
        :math:`\bar\alpha_{\tau_{-1}} = 1`, so that :math:`\bar\alpha'_k = \bar\alpha_{\tau_k}`.

        Parameters
        ----------
        timesteps
            Indices of this schedule to keep (any order, unique), e.g. from
            :func:`spaced_timesteps`.

        Returns
        -------
        NoiseSchedule
            Schedule of length ``K`` whose :attr:`timestep_map` maps back to the original
            training timesteps.
        """
        ts = torch.as_tensor(timesteps, dtype=torch.long).cpu()
        ts = torch.unique(ts)  # sorted ascending
        if len(ts) == 0 or ts[0] < 0 or ts[-1] >= len(self):
            raise ValueError(f"timesteps must be non-empty and in [0, {len(self) - 1}].")
        ab = self.alphas_cumprod[ts]
        ab_prev = torch.cat([ab.new_ones(1), ab[:-1]])
        return NoiseSchedule(1.0 - ab / ab_prev, timestep_map=self.timestep_map[ts])

    # ------------------------------------------------------------------ basic properties
    @property
    def T(self) -> int:
        """Number of timesteps."""
        return len(self.betas)

    def __len__(self) -> int:
        return len(self.betas)

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule(T={self.T}, beta[0]={self.betas[0].item():.3g}, "
            f"beta[-1]={self.betas[-1].item():.3g}, "
            f"alpha_bar[-1]={self.alphas_cumprod[-1].item():.3g})"
        )

    # ------------------------------------------------------------------ lookups
    def _table(self, name: Literal["log_ab", "ab"], device: torch.device) -> Tensor:
        key = (name, device)
        table = self._device_tables.get(key)
        if table is None:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            src = self._log_ab if name == "log_ab" else self.alphas_cumprod
            table = src.to(device=device, dtype=dtype)
            self._device_tables[key] = table
        return table

    def _check_int(self, t: Tensor) -> None:
        if bool(((t < 0) | (t >= self.T)).any()):
            raise ValueError(f"integer timesteps must be in [0, {self.T - 1}].")

    def log_alpha_bar(self, t: Tensor | float) -> Tensor:
        r""":math:`\log\bar\alpha_t`, linearly interpolated between integers for float ``t``.

        Parameters
        ----------
        t
            Timesteps, any shape; integer tensors index the table exactly, floating tensors (or
            Python numbers) in ``[0, T - 1]`` are interpolated linearly in :math:`\log\bar\alpha`
            (the interpolation used by DPM-Solver for discrete-time models).

        Returns
        -------
        Tensor
            Same shape as ``t``, on ``t``'s device, ``float64`` (``float32`` on MPS).
        """
        t = torch.as_tensor(t)
        table = self._table("log_ab", t.device)
        if not t.is_floating_point():
            self._check_int(t)
            return table[t]
        t = t.to(table.dtype).clamp(0, self.T - 1)
        if self.T == 1:
            return table[torch.zeros_like(t, dtype=torch.long)]
        lo = t.floor().long().clamp(max=self.T - 2)
        w = t - lo.to(t.dtype)
        return torch.lerp(table[lo], table[lo + 1], w)

    def alpha_bar(self, t: Tensor | float) -> Tensor:
        r""":math:`\bar\alpha_t`; exact table values for integer ``t``, interpolated for float."""
        t = torch.as_tensor(t)
        if t.is_floating_point():
            return self.log_alpha_bar(t).exp()
        self._check_int(t)
        return self._table("ab", t.device)[t]

    def log_snr(self, t: Tensor | float) -> Tensor:
        r"""Log signal-to-noise ratio :math:`\log\big(\bar\alpha_t / (1 - \bar\alpha_t)\big)`.

        This is twice the :math:`\lambda_t = \log(\alpha_t / \sigma_t)` of the DPM-Solver papers.
        """
        la = self.log_alpha_bar(t)
        return la - torch.log(-torch.expm1(la))

    def timestep_from_log_snr(self, log_snr: Tensor | float) -> Tensor:
        r"""Inverse of :meth:`log_snr` for float timesteps (exact for the interpolation used).

        Log-SNR values outside ``[log_snr(T-1), log_snr(0)]`` are clamped to ``T - 1`` or ``0``.

        Returns
        -------
        Tensor
            Float64 timesteps on the CPU, same shape as ``log_snr``.
        """
        lam = torch.as_tensor(log_snr, dtype=torch.float64).cpu()
        log_ab = -torch.nn.functional.softplus(-lam)  # log sigmoid(lambda)
        table = self._log_ab.numpy()[::-1]  # increasing
        grid = np.arange(self.T, dtype=np.float64)[::-1]
        return torch.from_numpy(np.interp(log_ab.numpy(), table, grid)).reshape(lam.shape)

    # ------------------------------------------------------------------ forward-process helpers
    def _coef(self, values: Tensor, like: Tensor) -> Tensor:
        """Broadcast per-sample coefficients ``values`` (``()`` or ``(B,)``) against ``like``."""
        values = values.to(device=like.device, dtype=like.dtype)
        if values.ndim == 0:
            return values
        return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))

    def _as_t(self, t: Tensor | float, like: Tensor) -> Tensor:
        return torch.as_tensor(t, device=like.device)

    def q_sample(self, x0: Tensor, t: Tensor | float, noise: Tensor) -> Tensor:
        r"""Noise clean data: :math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon`.

        Parameters
        ----------
        x0
            Clean data, shape ``(B, ...)``.
        t
            A scalar or a ``(B,)`` tensor of timesteps (integer or float).
        noise
            :math:`\varepsilon`, same shape as ``x0``.
        """
        ab = self.alpha_bar(self._as_t(t, x0))
        return self._coef(ab.sqrt(), x0) * x0 + self._coef((1 - ab).sqrt(), x0) * noise

    def predict_x0(self, x_t: Tensor, t: Tensor | float, eps: Tensor) -> Tensor:
        r""":math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon) / \sqrt{\bar\alpha_t}`.

        Shapes as in :meth:`q_sample`; inverse of it for a given noise.
        """
        ab = self.alpha_bar(self._as_t(t, x_t))
        return (x_t - self._coef((1 - ab).sqrt(), x_t) * eps) / self._coef(ab.sqrt(), x_t)

    def predict_eps(self, x_t: Tensor, t: Tensor | float, x0: Tensor) -> Tensor:
        r"""Noise implied by x0: :math:`(x_t - \sqrt{\bar\alpha_t}x_0)/\sqrt{1-\bar\alpha_t}`."""
        ab = self.alpha_bar(self._as_t(t, x_t))
        return (x_t - self._coef(ab.sqrt(), x_t) * x0) / self._coef((1 - ab).sqrt(), x_t)
