"""The multimodal DCA U-Net that predicts the noise of every modality's latent."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, TypedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._dca import AttentionMaps, DualCrossAttention, FeatureCrossAttention, _validate_modalities

CrossAttention = Literal["dca", "feature", "none"]

#: Width multipliers of the three U-Net levels (hard-coded in the reference ``create_model``).
CHANNEL_MULT = (4, 2, 1)
#: Names of the three cross-attention sites, in forward order.
ATTENTION_SITES = ("input_1", "middle", "output_1")


class AttentionSite(TypedDict):
    """What ``DCAUNet(..., return_attention=True)`` reports for one cross-attention site.

    Attributes
    ----------
    site
        ``"input_1"`` (DCA #1, input level 1), ``"middle"`` (DCA #2) or ``"output_1"`` (DCA #3).
    inputs
        Each stream's hidden vector entering the block, ``{modality: (B, n)}``. These are the
        live tensors of the forward graph (not detached), so they can be differentiated
        with respect to the denoiser or encoder inputs.
    attention
        ``attention[a][b]`` is ``S_{a->b}`` of shape ``(B, n, n)``: stream ``a`` (rows, queries)
        attending to stream ``b`` (columns); rows sum to one. Empty for
        ``cross_attention="none"``.
    """

    site: str
    inputs: dict[str, torch.Tensor]
    attention: AttentionMaps


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: cosines, then sines.

    Parameters
    ----------
    t
        Timesteps, shape ``(B,)``, integer or float.
    dim
        Embedding width; an odd ``dim`` gets a trailing zero column.
    max_period
        Longest period; frequencies are ``max_period ** (-k / (dim // 2))``, ``k < dim // 2``.

    Returns
    -------
    Tensor of shape ``(B, dim)``: ``[cos(t f_0), ..., cos(t f_{k-1}), sin(t f_0), ...]``.
    """
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=t.device) / half
    freqs = torch.exp(-math.log(max_period) * exponent)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def flatten_attention(
    attention: Sequence[AttentionSite], modalities: Sequence[str] = ("rna", "atac")
) -> list[torch.Tensor]:
    """Order attention outputs like the reference's ``att_vectors`` (two modalities).

    Parameters
    ----------
    attention
        The list returned by ``DCAUNet(..., return_attention=True)``.
    modalities
        The two streams in reference order (reference "video" = RNA, "audio" = ATAC).

    Returns
    -------
    ``4 * len(attention)`` tensors; for each site ``[h_a input (B, n), h_b input (B, n),
    S_{a->b} (B, n, n), S_{b->a} (B, n, n)]``. For the default U-Net these are the reference's
    12 ``att_vectors`` (indices 0-3 DCA #1, 4-7 DCA #2, 8-11 DCA #3), without the singleton
    channel axis of the reference's ``(B, 1, n)`` input vectors.
    """
    a, b = modalities
    flat = []
    for site in attention:
        flat += [site["inputs"][a], site["inputs"][b]]
        flat += [site["attention"][a][b], site["attention"][b][a]]
    return flat


class _ResBlock(nn.Module):
    """``skip(x) + Linear(Drop(SiLU(FiLM(LN(Linear(SiLU(LN(x))))))))`` for one stream."""

    def __init__(self, n_in: int, n_out: int, dropout: float, zero_init: bool):
        super().__init__()
        self.in_layers = nn.Sequential(nn.LayerNorm(n_in), nn.SiLU(), nn.Linear(n_in, n_out))
        self.out_norm = nn.LayerNorm(n_out)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), nn.Linear(n_out, n_out))
        if zero_init:
            nn.init.zeros_(self.out_layers[-1].weight)
            nn.init.zeros_(self.out_layers[-1].bias)
        self.skip = nn.Identity() if n_in == n_out else nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


class _StreamResBlock(nn.Module):
    """One ResBlock per stream plus the FiLM layer ``SiLU -> Linear(C, 2 n_out)`` they share."""

    def __init__(
        self,
        modalities: Sequence[str],
        n_in: int,
        n_out: int,
        emb_dim: int,
        dropout: float,
        zero_init: bool,
    ):
        super().__init__()
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * n_out))
        self.blocks = nn.ModuleDict(
            {m: _ResBlock(n_in, n_out, dropout, zero_init) for m in modalities}
        )

    def forward(
        self, h: Mapping[str, torch.Tensor], emb: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        film: dict[int, tuple[torch.Tensor, ...]] = {}
        out = {}
        for m, block in self.blocks.items():
            # streams that share one embedding tensor (equal timesteps) share one FiLM pass
            key = id(emb[m])
            if key not in film:
                film[key] = self.emb_layers(emb[m]).chunk(2, dim=-1)
            scale, shift = film[key]
            out[m] = block(h[m], scale, shift)
        return out


class DCAUNet(nn.Module):
    r"""Multimodal 1-D U-Net with Dual Cross Attention, the denoiser of scDiffusion-X.

    Predicts the noise :math:`\epsilon_m` added to each modality's latent :cite:p:`Luo2026`.
    Every modality has its own stream of layers; the streams share only the timestep/label/batch
    embedding MLP and the FiLM layer of each ResBlock, and they exchange information only in
    the three cross-attention blocks. With ``C = n_channels`` and ``w_m`` the latent size:

    ========  ==============================================  =======================
    stage     each stream                                     cross-attention
    ========  ==============================================  =======================
    initial   ``Linear(w_m, 4C)``
    in L0     ResBlock 4C -> 4C
    in L1     ResBlock 4C -> 2C                               site ``"input_1"`` (2C)
    in L2     ResBlock 2C -> C
    middle    cross-attention, then ResBlock C -> C           site ``"middle"`` (C)
    out L2    concat skip of in L2 (C), ResBlock 2C -> C
    out L1    concat skip of in L1 (2C), ResBlock 3C -> 2C    site ``"output_1"`` (2C)
    out L0    concat skip of in L0 (4C), ResBlock 6C -> 4C
    head      ``LayerNorm(4C), SiLU, Linear(4C, w_m)``
    ========  ==============================================  =======================

    Skips are taken after each input level (after the cross-attention at in L1) and
    concatenated as ``[h, skip]``. A ResBlock maps ``x`` to
    ``skip(x) + Linear(Dropout(SiLU(LN(Linear(SiLU(LN(x)))) * (1 + scale) + shift)))`` with
    ``(scale, shift) = Linear(SiLU(emb))`` (one FiLM layer per ResBlock, shared by the streams)
    and ``skip`` the identity or a ``Linear`` when the width changes. The embedding is
    ``MLP(sinusoid(t)) + E_label[label] + E_batch[batch]`` with the sinusoid of
    :func:`timestep_embedding` (width C, max period 10,000) and
    ``MLP = Linear(C, C), SiLU, Linear(C, C)``.

    Parameters
    ----------
    latent_dims
        Latent size of each modality, e.g. ``{"rna": 100, "atac": 100}`` (two or more); the key
        order is the stream order.
    n_labels
        Number of labels (e.g. cell types); 0 for an unconditional model. Label ``n_labels``
        is the null label (classifier-free guidance).
    n_batch
        Number of batches; 0 for no batch conditioning. Batch ``n_batch`` is the null batch.
    n_channels
        Base width ``C`` (128 in the reference generation runs, 160 for BABEL).
    cross_attention
        The cross-attention block at the three sites:

        * ``"dca"``: :class:`~scdx_scvi.nn.DualCrossAttention`, the reference (default);
        * ``"feature"``: :class:`~scdx_scvi.nn.FeatureCrossAttention`, with feature identity,
          multi-head attention, pre-LayerNorm and zero-initialised output (improved);
        * ``"none"``: no interaction between the streams (ablation).
    attention_dim
        Query/key/value width ``d`` of the cross-attention (64 in the reference).
    n_heads
        Attention heads of ``"feature"`` cross-attention.
    dropout
        Dropout inside the ResBlocks (and on ``"feature"`` attention weights); 0 in the
        reference.
    zero_init_head
        Zero-initialise the last linear layer of each head, so the initial prediction is 0
        (improvement; the reference uses the default initialisation).
    zero_init_residual
        Zero-initialise the last linear layer of each ResBlock, so every ResBlock starts as its
        skip path, as in guided-diffusion (improvement; the reference does not).
    gradient_checkpointing
        Recompute the activations of every ResBlock and cross-attention block during the
        backward pass to save memory (the reference always checkpoints its DCA blocks; this
        changes memory use only).
    source_injection
        Give each stream the other streams' latents directly (improvement; the reference has
        none): stream ``m`` adds ``Linear([x_k]_{k != m})`` to its input projection and
        ``Linear([x_k, e_k]_{k != m})`` to its embedding, so that every ResBlock's FiLM is
        modulated by the other modalities and by how noisy they are (``e_k`` is stream
        ``k``'s timestep embedding). The scalar-token DCA carries a few scalars per block
        between the streams, too little for a translation to follow its source; with this
        path a clean source (``t = 0``) steers the target at every level. Both layers start at
        zero, so an untrained network computes the same function as without them.

    Notes
    -----
    With the defaults and two modalities the network is the reference ``MultimodalUNet`` with
    ``channel_mult=(4, 2, 1)``, ``num_res_blocks=1``, ``use_scale_shift_norm=True``, apart from
    these deviations, none of which changes the function computed when all timesteps are equal
    and labels are given:

    * the label embedding has a null row (``n_labels + 1`` rows, ``C`` extra parameters) and
      ``labels=None`` selects it (the reference has no null token and requires labels when
      ``num_class`` is set); the optional batch embedding (with its null row) is new;
    * each stream may get its own timestep: stream ``m`` uses ``MLP(sinusoid(t_m))`` (same
      MLP weights) plus the label/batch embedding, and each ResBlock's FiLM layer is applied to
      each stream's own embedding; equal timesteps give the reference's shared embedding;
    * three or more modalities are allowed (see :class:`~scdx_scvi.nn.DualCrossAttention` for
      how the streams then interact);
    * hidden tensors are ``(B, width)`` rather than ``(B, 1, width)``;
    * gradient checkpointing is optional and off by default.

    The improved configuration, ``DCAUNet(latent_dims, cross_attention="feature",
    zero_init_head=True, zero_init_residual=True)``, departs from the reference in the
    cross-attention block (see :class:`~scdx_scvi.nn.FeatureCrossAttention`) and in the
    initialisation only. With zero-initialised heads every parameter except the heads' last
    layers gets zero gradient on the very first step.
    """

    def __init__(
        self,
        latent_dims: Mapping[str, int],
        n_labels: int = 0,
        n_batch: int = 0,
        n_channels: int = 128,
        cross_attention: CrossAttention = "dca",
        attention_dim: int = 64,
        n_heads: int = 4,
        dropout: float = 0.0,
        zero_init_head: bool = False,
        zero_init_residual: bool = False,
        gradient_checkpointing: bool = False,
        source_injection: bool = False,
    ):
        super().__init__()
        if cross_attention not in ("dca", "feature", "none"):
            raise ValueError(
                f"cross_attention must be 'dca', 'feature' or 'none', got {cross_attention!r}."
            )
        if n_labels < 0 or n_batch < 0:
            raise ValueError(f"n_labels and n_batch must be >= 0, got {n_labels}, {n_batch}.")
        self.modalities = _validate_modalities(latent_dims)
        self.latent_dims = {m: int(latent_dims[m]) for m in self.modalities}
        self.n_labels = n_labels
        self.n_batch = n_batch
        self.n_channels = n_channels
        self.cross_attention_type = cross_attention
        self.gradient_checkpointing = gradient_checkpointing

        c = n_channels
        widths = [m * c for m in CHANNEL_MULT]
        self.time_embed = nn.Sequential(nn.Linear(c, c), nn.SiLU(), nn.Linear(c, c))
        self.label_embed = nn.Embedding(n_labels + 1, c) if n_labels > 0 else None
        self.batch_embed = nn.Embedding(n_batch + 1, c) if n_batch > 0 else None

        def res_block(n_in: int, n_out: int) -> _StreamResBlock:
            return _StreamResBlock(self.modalities, n_in, n_out, c, dropout, zero_init_residual)

        self.input_proj = nn.ModuleDict(
            {m: nn.Linear(w, widths[0]) for m, w in self.latent_dims.items()}
        )
        self.input_blocks = nn.ModuleList()
        n_in = widths[0]
        for width in widths:
            self.input_blocks.append(res_block(n_in, width))
            n_in = width
        self.middle_block = res_block(widths[-1], widths[-1])
        self.output_blocks = nn.ModuleList()
        for width in reversed(widths):
            self.output_blocks.append(res_block(n_in + width, width))
            n_in = width
        self.head = nn.ModuleDict(
            {
                m: nn.Sequential(nn.LayerNorm(widths[0]), nn.SiLU(), nn.Linear(widths[0], w))
                for m, w in self.latent_dims.items()
            }
        )
        self.source_input = nn.ModuleDict()
        self.source_embed = nn.ModuleDict()
        if source_injection:
            total = sum(self.latent_dims.values())
            for m, w in self.latent_dims.items():
                n_other = total - w
                n_others = len(self.modalities) - 1
                self.source_input[m] = nn.Linear(n_other, widths[0])
                self.source_embed[m] = nn.Linear(n_other + n_others * c, c)
                for layer in (self.source_input[m], self.source_embed[m]):
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)
        if zero_init_head:
            for head in self.head.values():
                nn.init.zeros_(head[-1].weight)
                nn.init.zeros_(head[-1].bias)

        # DCA at input level 1, in the middle and at output level 1 (level == len(mult) - 2)
        site_widths = (widths[1], widths[-1], widths[1])
        self.cross_attention = nn.ModuleList()
        for width in site_widths if cross_attention != "none" else ():
            if cross_attention == "dca":
                block = DualCrossAttention(self.modalities, attention_dim)
            else:
                block = FeatureCrossAttention(
                    dict.fromkeys(self.modalities, width), attention_dim, n_heads, dropout
                )
            self.cross_attention.append(block)

    def _embed(
        self,
        t: Mapping[str, torch.Tensor] | torch.Tensor,
        labels: torch.Tensor | None,
        batch: torch.Tensor | None,
        batch_size: int,
        device: torch.device,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per-stream timestep embeddings, and the same plus the label/batch embeddings."""
        cond = None
        for name, codes, embed, n in (
            ("labels", labels, self.label_embed, self.n_labels),
            ("batch", batch, self.batch_embed, self.n_batch),
        ):
            if embed is None:
                if codes is not None:
                    raise ValueError(f"`{name}` given but the denoiser was built with n_{name}=0.")
                continue
            if codes is None:
                codes = torch.full((batch_size,), n, dtype=torch.long, device=device)
            term = embed(codes.reshape(batch_size).long())
            cond = term if cond is None else cond + term

        t_map = dict.fromkeys(self.modalities, t) if isinstance(t, torch.Tensor) else t
        cache: dict[int, torch.Tensor] = {}
        time = {}
        for m in self.modalities:
            tm = t_map[m]
            if id(tm) not in cache:
                tm = torch.as_tensor(tm, device=device)
                tm = tm.expand(batch_size) if tm.ndim == 0 else tm.reshape(batch_size)
                sinusoid = timestep_embedding(tm, self.n_channels)
                cache[id(t_map[m])] = self.time_embed(sinusoid.to(self.time_embed[0].weight.dtype))
            time[m] = cache[id(t_map[m])]
        if cond is None:
            return time, time
        with_cond = {id(e): e + cond for e in time.values()}
        return time, {m: with_cond[id(e)] for m, e in time.items()}

    def _inject_sources(
        self, x: Mapping[str, torch.Tensor], h: dict, emb: dict, time: dict
    ) -> tuple[dict, dict]:
        """Add the other streams' latents (and noise levels) to each stream's input and FiLM."""
        h, emb = dict(h), dict(emb)
        for m in self.source_input:
            others = [k for k in self.modalities if k != m]
            xs = torch.cat([x[k] for k in others], dim=-1)
            h[m] = h[m] + self.source_input[m](xs)
            emb[m] = emb[m] + self.source_embed[m](torch.cat([xs, *(time[k] for k in others)], -1))
        return h, emb

    def _call(self, fn: Callable, *args):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def _cross(
        self,
        index: int,
        h: dict[str, torch.Tensor],
        sites: list[AttentionSite],
        return_attention: bool,
    ) -> dict[str, torch.Tensor]:
        maps: AttentionMaps = {}
        if len(self.cross_attention):
            out = self._call(self.cross_attention[index], h, return_attention)
            h_new, maps = out if return_attention else (out, maps)
        else:
            h_new = h
        if return_attention:
            sites.append(AttentionSite(site=ATTENTION_SITES[index], inputs=h, attention=maps))
        return h_new

    def forward(
        self,
        x: Mapping[str, torch.Tensor],
        t: Mapping[str, torch.Tensor] | torch.Tensor,
        labels: torch.Tensor | None = None,
        batch: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], list[AttentionSite]]:
        """Predict the noise of each modality's latent.

        Parameters
        ----------
        x
            Noisy latents ``{modality: (B, w_m)}`` for every modality of ``latent_dims``.
        t
            Timesteps in ``[0, T - 1]`` (integer or float): ``{modality: (B,)}``, which may
            differ between modalities, or one ``(B,)`` (or scalar) tensor for all of them.
        labels
            Label codes ``(B,)`` in ``[0, n_labels]``, ``n_labels`` being the null label;
            ``None`` selects the null label for every cell. Only for ``n_labels > 0``.
        batch
            Batch codes ``(B,)`` in ``[0, n_batch]``, ``n_batch`` being the null batch;
            ``None`` selects the null batch. Only for ``n_batch > 0``.
        return_attention
            Also return what enters and what happens in each cross-attention block.

        Returns
        -------
        The noise predictions ``{modality: (B, w_m)}``; with ``return_attention`` a tuple of
        them and a list of three :class:`AttentionSite` dicts (DCA #1, #2, #3 in forward
        order; see :func:`flatten_attention` for the reference's 12-tensor layout).
        """
        missing = set(self.modalities) - set(x)
        if missing:
            raise KeyError(f"Missing latents for modalities {sorted(missing)}.")
        first = x[self.modalities[0]]
        batch_size = first.shape[0]
        time, emb = self._embed(t, labels, batch, batch_size, first.device)

        sites: list[AttentionSite] = []
        h = {m: self.input_proj[m](x[m]) for m in self.modalities}
        if len(self.source_input):
            h, emb = self._inject_sources(x, h, emb, time)
        skips = []
        for level, block in enumerate(self.input_blocks):
            h = self._call(block, h, emb)
            if level == 1:
                h = self._cross(0, h, sites, return_attention)
            skips.append(h)
        h = self._cross(1, h, sites, return_attention)
        h = self._call(self.middle_block, h, emb)
        for level, block in zip((2, 1, 0), self.output_blocks, strict=True):
            skip = skips.pop()
            h = {m: torch.cat([h[m], skip[m]], dim=-1) for m in self.modalities}
            h = self._call(block, h, emb)
            if level == 1:
                h = self._cross(2, h, sites, return_attention)
        eps = {m: self.head[m](h[m]) for m in self.modalities}
        return (eps, sites) if return_attention else eps
