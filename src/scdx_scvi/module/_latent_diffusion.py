"""Stage 2 of SCDX: a DDPM over the (scaled) per-modality latents of the frozen autoencoder."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Literal

import torch
from torch import Tensor, nn

from scdx_scvi.diffusion import (
    NoiseSchedule,
    Sampler,
    classifier_free_guidance,
    get_sampler,
    sample_noise,
)
from scdx_scvi.nn import DCAUNet

LatentScaling = Literal["scalar", "per_dim"]
Denoiser = Literal["faithful", "improved"]
Prediction = Literal["epsilon", "v"]
Spread = Literal["calibrated", "learned"]
#: How far sampled translations lie from the conditional mean (see :meth:`LatentDiffusion.sample`).
SPREADS = ("calibrated", "learned")

#: Average per-dimension standard deviation of the latents under ``latent_scaling="scalar"``
#: (the reference's scaling).
SCALAR_LATENT_SD = 0.1
#: Smallest average per-dimension standard deviation of a modality's training latents that can
#: be scaled; below it the autoencoder has learned (almost) nothing that varies between cells.
MIN_LATENT_SD = 1e-6

#: Constructor options of :class:`~scdx_scvi.nn.DCAUNet` for each named denoiser.
DENOISERS: dict[str, dict] = {
    "faithful": {"cross_attention": "dca"},
    "improved": {"cross_attention": "feature", "zero_init_head": True, "zero_init_residual": True},
}


class LatentDiffusion(nn.Module):
    r"""Denoiser, its EMA copy, the latent scaling and the noise schedule of SCDX.

    Training minimises the DDPM objective of the reference: for a cell with scaled latents
    :math:`x_0^m` (one per modality), a timestep :math:`t \sim U\{0..T-1\}` shared by the
    modalities and independent noises :math:`\varepsilon^m`,
    :math:`\mathcal{L} = \sum_m \mathrm{mean}_d (\hat\varepsilon^m(x_t, t, y) - \varepsilon^m)^2`
    (equal-weight per-modality MSE), with :math:`x_t^m = \sqrt{\bar\alpha_t} x_0^m +
    \sqrt{1 - \bar\alpha_t} \varepsilon^m` on the linear schedule (T = 1000, beta 1e-4..0.02).

    Two extensions train the same network for translation and on partially observed cells,
    using the denoiser's per-modality timesteps:

    * **conditional training** (``condition_prob > 0``): with that probability per cell, a
      random non-empty proper subset of its measured modalities is given clean, at ``t = 0``
      (the condition), and only the others are noised (with a shared ``t``) and contribute to
      the loss. The network then models :math:`p(x^{tgt} \mid x^{src})` for every split of the
      modalities as well as the joint (equal timesteps), which is what learned translation
      samples from.
    * **noisy conditions** (``condition_noise > 0``): the condition of a conditional example is
      given at a timestep :math:`s \sim U\{0..S\}` (``S = condition_noise``),
      :math:`\sqrt{\bar\alpha_s} x_0 + \sqrt{1-\bar\alpha_s}\varepsilon`, instead of clean
      (noise conditioning augmentation of cascaded diffusion models {cite:p}`Ho2022`). Given
      the exact source, a denoiser trained on a few thousand cells learns to recall each
      training cell's target rather than the conditional distribution (its translations of
      training cells are twice as accurate as of new ones); a source blurred by noise of a
      known level cannot be recalled, so the network learns the target given the source's
      neighbourhood, a kernel-smoothed conditional. At sampling, each source modality is
      given at its timestep ``condition_timesteps`` as the mean of its noised version,
      :math:`\sqrt{\bar\alpha_s} x_0^{src}` (one evaluation, deterministic);
      :meth:`~scdx_scvi.model.SCDX.train_diffusion` chooses it on validation cells.
    * **calibrated spread**: a translation sampled from a denoiser fitted to a few hundred or
      thousand cells is narrower around its conditional mean than that mean's error on new
      cells. ``translation_spread[source, target]`` widens (or narrows) each sample's distance
      from the conditional mean by one factor per direction;
      :meth:`~scdx_scvi.model.SCDX.train_diffusion` fits it on validation cells (1 until then).
    * **Gaussian residual** (``gaussian_residual=True``): the network predicts the residual of
      :math:`\hat\varepsilon` over the optimal predictor for Gaussian data with the latents'
      variance :math:`s^2`, :math:`\sqrt{1-\bar\alpha_t}\,x_t / (\bar\alpha_t s^2 + 1 -
      \bar\alpha_t)`. Near :math:`t = T` the noise must be predicted almost exactly (errors
      are amplified by :math:`1/\sqrt{\bar\alpha_t}` in :math:`\hat x_0`, 158-fold at
      ``T - 1``), which a plain network learns only after very long training (the reference
      trains 800k steps); the baseline gets this right from the first step, so short runs sample
      latents of the right scale instead of diverging.
    * **v-prediction** (``prediction="v"``): the network predicts
      :math:`v = \alpha_t \varepsilon - \sigma_t x_0` (:math:`\alpha_t = \sqrt{\bar\alpha_t}`,
      :math:`\sigma_t = \sqrt{1 - \bar\alpha_t}`) and the loss is the MSE on :math:`v`, i.e.
      the noise MSE weighted by :math:`1/\bar\alpha_t`. With noise prediction a condition
      barely matters to the loss: at large ``t`` the source changes the optimal
      :math:`\hat\varepsilon` by :math:`\sqrt{\bar\alpha_t / (1-\bar\alpha_t)}` times its
      effect on :math:`\hat x_0` (0.006 at ``t = T - 1``), so a denoiser trained on noise
      prediction learns to ignore it; with :math:`v` the loss at large ``t`` is the error of
      :math:`\hat x_0` itself. Samplers receive :math:`\hat\varepsilon = \alpha_t \hat v +
      \sigma_t x_t`.
    * **missing modalities** (``observed``): a modality a cell lacks is replaced by pure noise
      at ``t = T - 1`` and left out of the loss, so the network learns the marginals of the
      measured modalities from unpaired cells.

    Parameters
    ----------
    latent_dims
        Latent size of each modality.
    n_labels
        Number of labels the denoiser is conditioned on (0: unconditional).
    n_batch
        Number of batches the denoiser is conditioned on (0: none, the reference).
    denoiser
        ``"faithful"``: the reference DCA U-Net (scalar-token Dual Cross Attention).
        ``"improved"``: the same U-Net with feature cross-attention (learned feature identity,
        multi-head, pre-norm) and zero-initialised output layers.
    n_channels
        Base width ``C`` of the U-Net (128 in the reference).
    latent_scaling
        ``"scalar"`` (the reference): each modality's latent is divided by
        ``mean_d(std_d) / 0.1``, so the average per-dimension standard deviation is 0.1
        (:data:`SCALAR_LATENT_SD`).
        ``"per_dim"``: each dimension is centred and divided by its standard deviation.
    label_dropout
        Probability of replacing a cell's label (and batch) by the null token during training,
        which trains the unconditional model used by classifier-free guidance (0 in the
        reference, which has no guidance).
    condition_prob
        Probability of a conditional training example per cell (see above; 0 reproduces the
        reference, which trains the joint only).
    condition_label_dropout
        Probability of the null label (and batch) for a conditional training example, at least
        ``label_dropout``. Translation queries rarely come with labels, so the conditional must
        be learned without them; with the label given, the network can explain the target by
        the label and learn to ignore the source, and only ``label_dropout`` of the conditional
        examples (5% of the cells with the defaults) would teach it otherwise.
    condition_noise
        Largest timestep at which a condition is given in conditional training (see above; 0:
        always clean, the behaviour before this option).
    gaussian_residual
        Add the Gaussian-optimal prediction (of the noise, or of :math:`v`) to the network's
        output (see above; ``False`` is the reference).
    prediction
        What the network predicts: ``"epsilon"`` (the noise, the reference) or ``"v"``
        (see above).
    n_timesteps
        Number of diffusion steps ``T``.
    denoiser_kwargs
        Further options of :class:`~scdx_scvi.nn.DCAUNet`.
    """

    def __init__(
        self,
        latent_dims: Mapping[str, int],
        n_labels: int = 0,
        n_batch: int = 0,
        denoiser: Denoiser = "faithful",
        n_channels: int = 128,
        latent_scaling: LatentScaling = "scalar",
        label_dropout: float = 0.1,
        condition_prob: float = 0.0,
        condition_label_dropout: float = 0.5,
        condition_noise: int = 0,
        gaussian_residual: bool = False,
        prediction: Prediction = "epsilon",
        n_timesteps: int = 1000,
        denoiser_kwargs: Mapping | None = None,
    ):
        super().__init__()
        if denoiser not in DENOISERS:
            raise ValueError(f"denoiser must be one of {list(DENOISERS)}, got {denoiser!r}.")
        if latent_scaling not in ("scalar", "per_dim"):
            raise ValueError(
                f"latent_scaling must be 'scalar' or 'per_dim', got {latent_scaling!r}."
            )
        if not 0.0 <= label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}.")
        if prediction not in ("epsilon", "v"):
            raise ValueError(f"prediction must be 'epsilon' or 'v', got {prediction!r}.")
        if not 0.0 <= condition_label_dropout <= 1.0:
            raise ValueError(
                f"condition_label_dropout must be in [0, 1], got {condition_label_dropout}."
            )
        if not 0.0 <= condition_prob <= 1.0:
            raise ValueError(f"condition_prob must be in [0, 1], got {condition_prob}.")
        if int(condition_noise) != condition_noise or not 0 <= condition_noise < n_timesteps:
            raise ValueError(
                f"condition_noise must be an integer in [0, {n_timesteps - 1}], got "
                f"{condition_noise!r}."
            )
        self.modalities = tuple(latent_dims)
        self.latent_dims = {m: int(d) for m, d in latent_dims.items()}
        self.n_labels = n_labels
        self.n_batch = n_batch
        self.latent_scaling = latent_scaling
        self.label_dropout = label_dropout
        self.condition_prob = condition_prob
        self.condition_label_dropout = max(condition_label_dropout, label_dropout)
        self.condition_noise = int(condition_noise)
        self.gaussian_residual = gaussian_residual
        self.prediction = prediction
        options = {**DENOISERS[denoiser], **(denoiser_kwargs or {})}
        self.denoiser = DCAUNet(
            latent_dims, n_labels=n_labels, n_batch=n_batch, n_channels=n_channels, **options
        )
        self.ema = copy.deepcopy(self.denoiser).requires_grad_(False)
        self.schedule = NoiseSchedule.linear(T=n_timesteps)
        for m, d in latent_dims.items():
            self.register_buffer(f"latent_shift_{m}", torch.zeros(d))
            self.register_buffer(f"latent_scale_{m}", torch.ones(d))
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        # timestep at which each modality is given as a condition when sampling (0: clean)
        self.register_buffer("condition_timesteps", torch.zeros(len(latent_dims), dtype=torch.long))
        # factor on a sampled translation's distance from the conditional mean, [source, target]
        n = len(latent_dims)
        self.register_buffer("translation_spread", torch.ones(n, n))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # models saved before these buffers existed: clean conditions, the learned spread
        for name, fill in (("condition_timesteps", 0), ("translation_spread", 1)):
            state_dict.setdefault(prefix + name, torch.full_like(getattr(self, name), fill))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def spread_factor(self, sources: Iterable[str], target: str) -> float:
        """Return the factor on ``target``'s distance from its conditional mean given ``sources``.

        With several sources, the smallest of their single-source factors (each was fitted
        with one source; more sources determine the target at least as well as the best one).
        """
        j = self.modalities.index(target)
        return min(float(self.translation_spread[self.modalities.index(m), j]) for m in sources)

    # ------------------------------------------------------------------ latent scaling

    @torch.no_grad()
    def fit_scaling(self, z: Mapping[str, Tensor]) -> None:
        """Set the latent shift and scale of each modality from training latents ``z``.

        Raises
        ------
        ValueError
            If a modality's latents are not finite or have (almost) no spread (average
            per-dimension SD below :data:`MIN_LATENT_SD`): they cannot be scaled, and the
            diffusion would learn NaN.
        """
        fitted = {}
        for m in self.modalities:
            std = z[m].std(dim=0)
            spread = float(std.mean()) if len(z[m]) > 1 else float("nan")
            if not spread >= MIN_LATENT_SD:
                raise ValueError(
                    f"The {m} latents of the training cells have an average SD of {spread:.3g} "
                    f"({len(z[m])} cells), so the diffusion cannot be fitted: the autoencoder "
                    "encodes every cell (almost) alike or gives non-finite values. Check the "
                    f"{m} data (enough cells with counts, more than a few features that vary) "
                    "and train the autoencoder again."
                )
            if self.latent_scaling == "scalar":
                fitted[m] = torch.zeros_like(std), torch.full_like(std, spread / SCALAR_LATENT_SD)
            else:
                fitted[m] = z[m].mean(dim=0), std.clamp(min=1e-6)
        for m, (shift, scale) in fitted.items():  # only once every modality passed
            getattr(self, f"latent_shift_{m}").copy_(shift)
            getattr(self, f"latent_scale_{m}").copy_(scale)

    def scale(self, z: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Map autoencoder latents to the diffusion space."""
        return {
            m: (v - getattr(self, f"latent_shift_{m}")) / getattr(self, f"latent_scale_{m}")
            for m, v in z.items()
        }

    def unscale(self, x: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Map diffusion-space latents back to autoencoder latents."""
        return {
            m: v * getattr(self, f"latent_scale_{m}") + getattr(self, f"latent_shift_{m}")
            for m, v in x.items()
        }

    # ------------------------------------------------------------------ training

    @staticmethod
    def _drop_to_null(codes: Tensor | None, n_null: int, p: Tensor, generator) -> Tensor | None:
        """Replace each code by the null code ``n_null`` with probability ``p`` (per cell)."""
        if n_null == 0:
            return None
        codes = codes.reshape(-1).long()
        if (p > 0).any():
            drop = torch.rand(codes.shape, generator=generator, device=codes.device) < p
            codes = torch.where(drop, torch.full_like(codes, n_null), codes)
        return codes

    def _roles(
        self, observed: Mapping[str, Tensor], generator: torch.Generator | None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Return, per cell and modality, whether it is a condition (clean) and a target (loss).

        With probability ``condition_prob``, a cell with at least two measured modalities gets
        a uniformly drawn non-empty proper subset of them as the condition.
        """
        obs = torch.stack([observed[m] for m in self.modalities], dim=-1)  # (B, M)
        n, device = obs.shape[0], obs.device
        condition = torch.zeros_like(obs)
        p = self.condition_prob if obs.shape[1] > 1 else 0.0
        if p > 0:
            chosen = (torch.rand(n, generator=generator, device=device) < p) & (obs.sum(-1) > 1)
            pending = chosen.clone()
            while pending.any():  # rejection sampling of proper subsets of the measured ones
                bits = torch.rand(obs.shape, generator=generator, device=device) < 0.5
                bits &= obs
                k = bits.sum(-1)
                accept = pending & (k > 0) & (k < obs.sum(-1))
                condition[accept] = bits[accept]
                pending &= ~accept
        target = obs & ~condition
        return (
            {m: condition[:, i] for i, m in enumerate(self.modalities)},
            {m: target[:, i] for i, m in enumerate(self.modalities)},
        )

    def loss(
        self,
        x0: Mapping[str, Tensor],
        labels: Tensor | None = None,
        batch: Tensor | None = None,
        observed: Mapping[str, Tensor] | None = None,
        use_ema: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """DDPM loss of a minibatch of scaled latents.

        Parameters
        ----------
        x0
            Scaled latents ``{modality: (B, d_m)}``.
        labels, batch
            Codes ``(B,)`` or ``(B, 1)``; dropped to the null token with ``label_dropout``
            (``condition_label_dropout`` for conditional examples) in training mode.
        observed
            Whether each cell has each modality, ``{modality: (B,) bool}`` (default: all).
        use_ema
            Evaluate the EMA denoiser (validation).
        generator
            Source of the timesteps, roles and noise (a fixed one makes validation
            deterministic).

        Returns
        -------
        The loss per cell ``(B,)``, the MSE per cell of each modality and whether it counts
        (the modality is a target of the cell: measured and not a condition).
        """
        ref = next(iter(x0.values()))
        n, device = ref.shape[0], ref.device
        if observed is None:
            observed = {m: torch.ones(n, dtype=torch.bool, device=device) for m in x0}
        condition, target = self._roles(observed, generator)
        conditional = torch.stack(list(condition.values()), -1).any(-1)
        p = torch.where(conditional, self.condition_label_dropout, self.label_dropout)
        p = p * self.training
        labels = self._drop_to_null(labels, self.n_labels, p, generator)
        batch = self._drop_to_null(batch, self.n_batch, p, generator)
        t = torch.randint(
            0, self.schedule.T, (n,), generator=generator, device=device, dtype=torch.long
        )
        noise = {
            m: torch.randn(v.shape, generator=generator, device=v.device, dtype=v.dtype)
            for m, v in x0.items()
        }
        s = 0
        if self.condition_noise:
            s = torch.randint(0, self.condition_noise + 1, (n,), generator=generator, device=device)
        x_t, t_m = {}, {}
        for m, v in x0.items():
            missing = ~observed[m]
            t_m[m] = torch.where(condition[m], s, torch.where(missing, self.schedule.T - 1, t))
            noised = self.schedule.q_sample(v, t, noise[m])
            noised = torch.where(missing.unsqueeze(-1), noise[m], noised)
            given = self.schedule.q_sample(v, s, noise[m]) if torch.is_tensor(s) else v
            x_t[m] = torch.where(condition[m].unsqueeze(-1), given, noised)
        network = self.ema if use_ema else self.denoiser
        out = self._output(network, x_t, t_m, labels, batch)
        if self.prediction == "v":
            ab = self.schedule.alpha_bar(t).to(ref.dtype).unsqueeze(-1)
            goal = {m: ab.sqrt() * noise[m] - (1.0 - ab).sqrt() * x0[m] for m in x0}
        else:
            goal = noise
        mse = {m: ((out[m] - goal[m]) ** 2).mean(dim=-1) for m in x0}
        return sum(mse[m] * target[m] for m in x0), mse, target

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """Move the EMA weights towards the denoiser's.

        The effective decay warms up as ``min(decay, (1 + k) / (10 + k))`` over the ``k``
        updates so far, so short runs are not dominated by the initial weights.
        """
        k = int(self.ema_updates)
        rate = min(decay, (1.0 + k) / (10.0 + k))
        for ema, live in zip(self.ema.parameters(), self.denoiser.parameters(), strict=True):
            ema.lerp_(live, 1.0 - rate)
        for ema, live in zip(self.ema.buffers(), self.denoiser.buffers(), strict=True):
            ema.copy_(live)
        self.ema_updates += 1

    def labelled_denoiser(self):
        """Return ``denoiser(x, t, labels) -> eps`` of the EMA weights, as the samplers expect.

        ``labels`` may be ``(B,)`` label codes or ``(B, 2)`` label and batch codes.
        """

        def call(x: dict[str, Tensor], t: dict[str, Tensor], labels: Tensor | None) -> dict:
            lab, bat = labels, None
            if labels is not None and labels.ndim == 2:
                lab, bat = labels[:, 0], labels[:, 1]
            return self._predict(
                self.ema, x, t, lab if self.n_labels else None, bat if self.n_batch else None
            )

        return call

    def condition_input(self, modality: str, x0: Tensor) -> tuple[Tensor, int]:
        r"""Return how the scaled latent ``x0`` of ``modality`` enters as a condition at sampling.

        ``(x, s)``: the mean of its noised version at its ``condition_timesteps`` entry ``s``,
        :math:`\sqrt{\bar\alpha_s} x_0` (``x0`` itself at ``s = 0``), and ``s``.
        """
        s = int(self.condition_timesteps[self.modalities.index(modality)])
        return (self.schedule.q_sample(x0, s, torch.zeros_like(x0)) if s else x0), s

    def _conditions_at_timesteps(self, denoiser, sources: Iterable[str]):
        """Wrap ``denoiser(x, t, labels)`` so that the ``sources`` enter as :meth:`condition_input`.

        The samplers pass a condition clean at ``t = 0``.
        """
        sources = [m for m in sources if int(self.condition_timesteps[self.modalities.index(m)])]
        if not sources:
            return denoiser

        def call(x: dict[str, Tensor], t: dict[str, Tensor], labels: Tensor | None) -> dict:
            x, t = dict(x), dict(t)
            for m in sources:
                x[m], s = self.condition_input(m, x[m])
                t[m] = torch.full_like(t[m], s)
            return denoiser(x, t, labels)

        return call

    # ------------------------------------------------------------------ sampling

    def condition_codes(self, labels: Tensor | None, batch: int | None, n_cells: int) -> Tensor:
        """Return the denoiser's condition ``(n_cells, 2)``: label and batch code of each cell.

        ``labels=None`` gives the null label and ``batch=None`` the null batch (the tokens of
        label dropout, i.e. the unconditional model); the batch is ignored by a denoiser that
        is not batch-conditioned.
        """
        device = self.ema_updates.device
        if labels is None:
            labels = torch.full((n_cells,), self.n_labels, device=device)
        labels = labels.reshape(-1).long().to(device)
        code = self.n_batch if batch is None or not self.n_batch else int(batch)
        return torch.stack([labels, torch.full_like(labels, code)], dim=1)

    def null_condition(self) -> Tensor:
        """Return the null (label, batch) token, ``(2,)``."""
        return torch.tensor([self.n_labels, self.n_batch], device=self.ema_updates.device)

    def make_sampler(
        self, name: str, clip_x0: float | Literal["auto"] | None = "auto", **options
    ) -> Sampler:
        """Build the sampler ``name`` (:func:`~scdx_scvi.diffusion.get_sampler`).

        ``clip_x0`` is resolved by :meth:`resolve_clip_x0`.
        """
        return get_sampler(name, clip_x0=self.resolve_clip_x0(clip_x0), **options)

    def resolve_clip_x0(self, clip_x0: float | Literal["auto"] | None) -> float | None:
        """Return the clamp of the predicted clean latent that ``clip_x0`` asks for.

        ``"auto"`` clamps at 1 with ``"scalar"`` scaling (the reference's ``clip_denoised``:
        10 SDs of its latents) and not at all with ``"per_dim"``.
        """
        if isinstance(clip_x0, str) and clip_x0 == "auto":
            return 10 * SCALAR_LATENT_SD if self.latent_scaling == "scalar" else None
        if clip_x0 is not None and (
            isinstance(clip_x0, bool | str) or not isinstance(clip_x0, Real) or not clip_x0 > 0
        ):
            raise ValueError(f"`clip_x0` must be 'auto', None or a number > 0, got {clip_x0!r}.")
        return clip_x0

    def resolve_steps(self, sampler: Sampler, n_steps: int | None) -> int:
        """Return the number of denoiser evaluations of ``sampler`` for ``n_steps``."""
        return sampler.resolve_steps(n_steps, self.schedule)

    @torch.no_grad()
    def sample(
        self,
        sampler: str | Sampler,
        n_cells: int | None = None,
        labels: Tensor | None = None,
        batch: int | None = None,
        condition: Mapping[str, Tensor] | None = None,
        n_steps: int | None = None,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        clip_x0: float | Literal["auto"] | None = "auto",
        progress: bool = False,
        spread: Spread = "calibrated",
    ) -> dict[str, Tensor]:
        """Sample autoencoder latents with the EMA denoiser: scale, sample, unscale.

        Parameters
        ----------
        sampler
            A :class:`~scdx_scvi.diffusion.Sampler`, or its name (see :meth:`make_sampler`).
        n_cells
            Number of cells; needed only without ``labels`` and ``condition``.
        labels
            Label codes ``(n_cells,)``; ``None``: the null label.
        batch
            Batch code of every cell; ``None``: the null batch.
        condition
            Autoencoder latents of the source modalities ``{m: (n_cells, d_m)}``: the other
            modalities are sampled given them (translation).
        n_steps
            Denoiser evaluations (``None``: the sampler's default).
        guidance_scale
            Classifier-free guidance ``w`` on the (label, batch) condition (1: none).
        generator
            Source of the initial noise and of the sampler's draws.
        clip_x0
            Clamp of the predicted clean latent, for a sampler given by name.
        progress
            Show a progress bar over the steps.
        spread
            With a ``condition`` and a sampler that draws (not a point estimate, not
            zero-shot): ``"calibrated"`` moves each sample away from the conditional mean
            (:class:`~scdx_scvi.diffusion.MeanSampler`, one more evaluation) by the factor
            :meth:`spread_factor`; ``"learned"`` returns the samples as drawn.

        Returns
        -------
        The latents of the modalities not in ``condition``, on the autoencoder's scale.

        Raises
        ------
        RuntimeError
            If a sampled latent is not finite.
        """
        if spread not in SPREADS:
            raise ValueError(f"`spread` must be one of {SPREADS}, got {spread!r}.")
        if isinstance(sampler, str):
            sampler = self.make_sampler(sampler, clip_x0)
        scaled = self.scale(condition or {})
        sizes = {len(v) for v in scaled.values()} | ({len(labels)} if labels is not None else set())
        sizes |= {n_cells} if n_cells is not None else set()
        if len(sizes) != 1:
            raise ValueError(f"`n_cells`, `labels` and `condition` disagree on the cells: {sizes}.")
        n = sizes.pop()
        if generator is None:
            generator = torch.Generator(device=self.ema_updates.device)
        free = {m: d for m, d in self.latent_dims.items() if m not in scaled}
        denoiser = self.labelled_denoiser()
        if not sampler.zero_shot:
            denoiser = self._conditions_at_timesteps(denoiser, scaled)
        eps_fn = classifier_free_guidance(
            denoiser,
            self.condition_codes(labels, batch, n),
            self.null_condition(),
            guidance_scale,
        )
        noise = sample_noise(free, n, generator)
        x0 = sampler(eps_fn, noise, self.schedule, n_steps, generator, scaled or None, progress)
        if spread == "calibrated" and scaled and not (sampler.point_estimate or sampler.zero_shot):
            factors = {m: self.spread_factor(scaled, m) for m in free}
            if any(f != 1.0 for f in factors.values()):
                mean = get_sampler("mean", clip_x0=sampler.clip_x0)(
                    eps_fn, noise, self.schedule, None, generator, scaled, False
                )
                x0 = {m: mean[m] + factors[m] * (x0[m] - mean[m]) for m in free}
        latents = self.unscale({m: x0[m] for m in free})
        for m, v in latents.items():
            bad = int((~torch.isfinite(v)).any(dim=-1).sum())
            if bad:
                raise RuntimeError(
                    f"Sampling gave non-finite {m} latents for {bad} of {n} cells: the source "
                    "had non-finite values, or the diffusion diverged (see "
                    "`model.diffusion_history`; more `n_steps` or `clip_x0` may help)."
                )
        return latents

    def _coefficients(self, t, like: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(\alpha_t, \sigma_t)` as ``(B, 1)`` columns for the rows of ``like``."""
        t = torch.as_tensor(t, device=like.device).expand(like.shape[0])
        ab = self.schedule.alpha_bar(t).to(like.dtype).unsqueeze(-1)
        return ab.sqrt(), (1.0 - ab).sqrt()

    def _output(self, network: nn.Module, x: dict, t: dict, labels, batch) -> dict[str, Tensor]:
        """Evaluate the network (noise or v), plus the Gaussian-optimal value if enabled."""
        out = network(x, t, labels=labels, batch=batch)
        if not self.gaussian_residual:
            return out
        # variance of the scaled latents: 0.01 with the reference's scalar scaling, 1 per dim
        var = SCALAR_LATENT_SD**2 if self.latent_scaling == "scalar" else 1.0
        for m, x_m in x.items():
            a, s = self._coefficients(t[m] if isinstance(t, Mapping) else t, x_m)
            # optimum for x0 ~ N(0, var): eps* = s x / (a² var + s²), v* = a eps* - s x0*
            factor = s / (a**2 * var + s**2)
            if self.prediction == "v":
                factor = a * factor * (1.0 - var)
            out[m] = out[m] + factor * x_m
        return out

    def _predict(self, network: nn.Module, x: dict, t: dict, labels, batch) -> dict[str, Tensor]:
        """Predict the noise of each modality (what the samplers use)."""
        out = self._output(network, x, t, labels, batch)
        if self.prediction == "epsilon":
            return out
        eps = {}
        for m, x_m in x.items():
            a, s = self._coefficients(t[m] if isinstance(t, Mapping) else t, x_m)
            eps[m] = a * out[m] + s * x_m
        return eps
