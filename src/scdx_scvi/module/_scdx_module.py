"""The SCDX module: one deterministic autoencoder per modality (stage 1 of scDiffusion-X)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, get_args

import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from scdx_scvi._constants import MODALITIES, MODULE_KEYS
from scdx_scvi.diffusion import Sampler
from scdx_scvi.nn import MLP

from ._depth import LatentDepth, TrainingDepths
from ._latent_diffusion import LatentDiffusion
from ._likelihoods import EncoderInput, ProteinLikelihood, likelihood_class, make_likelihood

#: Values of ``generation_depth`` (see :class:`SCDXModule`).
GenerationDepth = Literal["label", "latent", "latent_atac", "training_cells"]
GENERATION_DEPTHS = get_args(GenerationDepth)
#: Values of ``expected`` (see :meth:`SCDXModule.decode_normalized`).
ExpectedValue = Literal["counts", "log1p"]
EXPECTED_VALUES = get_args(ExpectedValue)

ReconstructionWeights = Literal["sum", "per_feature"] | Mapping[str, float]


def _on_rows(
    fn: Callable[..., torch.Tensor], rows: torch.Tensor | None, x: torch.Tensor, *cov
) -> torch.Tensor:
    """``fn(x, *cov)`` evaluated on the selected ``rows`` only; zeros elsewhere.

    With all rows selected (or fewer than two, which batch normalisation cannot take in
    training) every row is evaluated. A sparse CSR ``x`` (translation input) is made dense to
    select a subset of its rows.
    """
    if rows is None or bool(rows.all()):
        return fn(x, *cov)
    if x.layout == torch.sparse_csr:
        x = x.to_dense()
    if int(rows.sum()) < 2:
        return fn(x, *cov) * rows.unsqueeze(-1)
    values = fn(x[rows], *(c[rows] for c in cov))
    out = values.new_zeros((x.shape[0], *values.shape[1:]))
    out[rows] = values
    return out


class _SplitRows(torch.autograd.Function):
    """``x.split(sizes)`` whose backward pass reuses the gradients' block when it can.

    The built-in split concatenates the parts' gradients into a new tensor. When they already
    lie one after the other in one block (the ATAC likelihood writes each part's gradient over
    its logits, see :class:`~scdx_scvi.module._likelihoods._BinaryCrossEntropy`), that block is
    the gradient of ``x``, and a copy of the largest tensor of a minibatch is saved.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
        ctx.shape, ctx.stride = x.shape, x.stride()
        return x.split(sizes)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> tuple[torch.Tensor, None]:
        if _one_block(grads, ctx.stride):
            first = grads[0]
            return first.as_strided(ctx.shape, ctx.stride, first.storage_offset()), None
        return torch.cat(grads), None


def _one_block(grads: Sequence[torch.Tensor], stride: tuple[int, ...]) -> bool:
    """Whether ``grads`` are consecutive row blocks of one tensor of ``stride``.

    Tensors without a storage of their own (under :mod:`torch.func` transforms) are not.
    """
    try:
        if any(not g.is_contiguous() or g.stride() != stride for g in grads):
            return False
        storage, offset = grads[0].untyped_storage().data_ptr(), grads[0].storage_offset()
        for g in grads:
            if g.untyped_storage().data_ptr() != storage or g.storage_offset() != offset:
                return False
            offset += g.numel()
    except (NotImplementedError, RuntimeError):
        return False
    return True


class SCDXModule(BaseModuleClass):
    """Multimodal autoencoder of scDiffusion-X :cite:p:`Luo2026`.

    Every modality has its own deterministic MLP encoder (features -> latent) and decoder
    (latent -> features); there are no joint layers, so a cell has one latent vector per
    modality. RNA and protein are decoded as ``softmax * library`` with a negative binomial
    likelihood (one dispersion per feature; protein optionally as a background/foreground
    mixture); ATAC is decoded as a Bernoulli on binarised accessibility.

    Parameters
    ----------
    n_features
        Number of features of each modality, e.g. ``{"rna": 2000, "atac": 30000}``. The order
        of the keys is the order of the modalities everywhere (latents, losses, outputs).
    n_hidden
        Hidden widths of each modality's encoder; the decoder uses them in reverse.
    n_latent
        Latent size of each modality.
    n_batch
        Number of batches. With ``use_batch`` and more than one batch, the one-hot batch is
        injected into every hidden layer of the encoders and decoders.
    use_batch
        Whether to condition the autoencoder on the batch (the reference does not).
    norm
        ``"batchnorm"`` or ``"layernorm"`` after each hidden linear layer.
    dropout_rate
        Dropout after each hidden activation (0 in the reference).
    encoder_input
        What the RNA and protein encoders see: ``"counts"`` (raw counts, the reference) or
        ``"log1p"`` (log1p of counts per 10,000). ATAC encoders always see binarised values.
    reconstruction_weights
        How the per-modality negative log-likelihoods (each summed over features) are combined:
        ``"sum"`` adds them (the reference; the modality with most features dominates),
        ``"per_feature"`` divides each by its number of features, a mapping gives one weight per
        modality.
    n_labels
        Number of label categories (cell types) the diffusion is conditioned on; 0 for an
        unconditional diffusion. Also the number of per-label library-size priors.
    diffusion_batch
        Condition the diffusion on the batch as well (needs ``n_batch > 1``).
    cross_reconstruction
        Weight of the cross-reconstruction term: every modality is also decoded from every
        other modality's latent (``decoder_b(z_a)`` scored against ``x_b``, with ``x_b``'s own
        likelihood and weight), on the cells that have both. This makes each latent predictive
        of the other modalities and puts the latents in one coordinate system that every decoder
        reads, as BABEL's cross loss does :cite:p:`Wu2021`. 0 reproduces the reference (two
        unrelated per-modality latents). Needs equal latent sizes.
    latent_agreement
        Weight of a penalty on the disagreement of the modality latents of a cell: the squared
        difference of every pair, divided by the (detached) average latent variance of the
        minibatch so that it does not reward shrinking the latents, averaged over dimensions.
        The counterpart of MultiVI's penalty between its modality posteriors
        :cite:p:`Ashuach2023`. 0 reproduces the reference. Needs equal latent sizes.
    generation_depth
        Depth (library size, open peaks) of generated cells. ``"label"`` (the reference) draws
        count libraries from the per-label log-normal and ATAC from the decoder's probabilities
        as they are; ``"latent"`` draws every modality's depth from a log-normal whose mean is
        linear in the cell's latent (:class:`LatentDepth`), ATAC logits being shifted to that
        number of open peaks; ``"latent_atac"`` does so for ATAC only and keeps the per-label
        libraries of count modalities; ``"training_cells"`` draws ATAC as ``"latent_atac"`` and
        gives each generated cell the library sizes of a training cell of its label, for every
        count modality at once (:class:`TrainingDepths`).
    protein_likelihood
        ``"nb"`` (the reference): protein counts as RNA's, a negative binomial per protein;
        ``"nb_mixture"``: a background and a foreground negative binomial per protein, as
        totalVI's (:class:`~scdx_scvi.module.CountMixtureLikelihood`).
    diffusion_kwargs
        Options of :class:`~scdx_scvi.module.LatentDiffusion` (denoiser, latent scaling, ...).
    """

    def __init__(
        self,
        n_features: Mapping[str, int],
        n_hidden: Mapping[str, Sequence[int]],
        n_latent: Mapping[str, int],
        n_batch: int = 0,
        use_batch: bool = False,
        norm: Literal["batchnorm", "layernorm"] = "batchnorm",
        dropout_rate: float = 0.0,
        encoder_input: EncoderInput = "counts",
        reconstruction_weights: ReconstructionWeights = "sum",
        n_labels: int = 0,
        diffusion_batch: bool = False,
        cross_reconstruction: float = 0.0,
        latent_agreement: float = 0.0,
        generation_depth: GenerationDepth = "label",
        protein_likelihood: ProteinLikelihood = "nb",
        diffusion_kwargs: Mapping | None = None,
    ):
        super().__init__()
        unknown = set(n_features) - set(MODALITIES)
        if unknown:
            raise ValueError(f"Unknown modalities {sorted(unknown)}; expected {list(MODALITIES)}.")
        if len(n_features) < 2:
            raise ValueError(f"SCDX needs at least two modalities, got {list(n_features)}.")
        self.modalities: tuple[str, ...] = tuple(n_features)
        self.n_features = dict(n_features)
        self.n_latent = {m: int(n_latent[m]) for m in self.modalities}
        self.n_batch = n_batch
        self.use_batch = use_batch and n_batch > 1
        self.reconstruction_weights = _resolve_weights(reconstruction_weights, self.n_features)
        for name, value in (
            ("cross_reconstruction", cross_reconstruction),
            ("latent_agreement", latent_agreement),
        ):
            if not float(value) >= 0.0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
        if (cross_reconstruction or latent_agreement) and len(set(self.n_latent.values())) > 1:
            raise ValueError(
                "cross_reconstruction and latent_agreement need one latent size for every "
                f"modality, got {self.n_latent}: pass one int as `n_latent`, or set "
                "`cross_reconstruction=0` and `latent_agreement=0`."
            )
        self.cross_reconstruction = float(cross_reconstruction)
        self.latent_agreement = float(latent_agreement)
        if generation_depth not in GENERATION_DEPTHS:
            raise ValueError(
                f"generation_depth must be one of {GENERATION_DEPTHS}, got {generation_depth!r}."
            )
        self.generation_depth = generation_depth
        cat_list = [n_batch] if self.use_batch else None

        self.encoders = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        self.likelihoods = nn.ModuleDict()
        for m in self.modalities:
            hidden = tuple(n_hidden[m])
            self.encoders[m] = MLP(
                n_features[m], self.n_latent[m], hidden, cat_list, norm, dropout_rate
            )
            n_out = n_features[m] * likelihood_class(m, protein_likelihood).outputs_per_feature
            self.decoders[m] = MLP(
                self.n_latent[m], n_out, hidden[::-1], cat_list, norm, dropout_rate
            )
            self.likelihoods[m] = make_likelihood(
                m, n_features[m], encoder_input, protein_likelihood
            )
            if not self.likelihoods[m].binary:
                # log-normal prior of the library size per label, fitted on training cells
                self.register_buffer(f"library_log_mean_{m}", torch.zeros(max(n_labels, 1)))
                self.register_buffer(f"library_log_std_{m}", torch.ones(max(n_labels, 1)))
        self.n_labels = n_labels
        self.register_buffer("label_counts", torch.zeros(max(n_labels, 1)))
        self.depth = LatentDepth(self.n_latent)
        self.training_depths = TrainingDepths(
            [m for m in self.modalities if not self.likelihoods[m].binary]
        )
        self.diffusion = LatentDiffusion(
            self.n_latent,
            n_labels=n_labels,
            n_batch=n_batch if diffusion_batch and n_batch > 1 else 0,
            **(diffusion_kwargs or {}),
        )

    @property
    def autoencoder(self) -> tuple[nn.Module, ...]:
        """The parts of stage 1 (frozen while the diffusion trains)."""
        return (self.encoders, self.decoders, self.likelihoods)

    def dispersion_parameters(self) -> list[nn.Parameter]:
        """Return the per-feature log-dispersions of the count likelihoods (RNA, protein)."""
        return [lik.log_theta for lik in self.likelihoods.values() if not lik.binary]

    def freeze_autoencoder(self, frozen: bool = True) -> None:
        """Freeze the autoencoder (no gradients, eval mode) or make it trainable again."""
        for part in self.autoencoder:
            part.requires_grad_(not frozen)
            if frozen:
                part.eval()

    def _covariates(self, batch_index: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        return (batch_index,) if self.use_batch and batch_index is not None else ()

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        present = [m for m in self.modalities if MODALITIES[m].registry_key in tensors]
        return {
            MODULE_KEYS.X: {m: tensors[MODALITIES[m].registry_key] for m in present},
            MODULE_KEYS.BATCH_INDEX: tensors.get(REGISTRY_KEYS.BATCH_KEY),
            MODULE_KEYS.OBSERVED: {
                m: tensors[MODALITIES[m].observed_key]
                for m in present
                if MODALITIES[m].observed_key in tensors
            },
        }

    @auto_move_data
    def inference(
        self,
        x: Mapping[str, torch.Tensor],
        batch_index: torch.Tensor | None = None,
        observed: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Encode each modality present in ``x`` (raw layer values) into its latent.

        A cell has a modality when its row has counts and its mask in ``observed`` (if any) is
        true. Only those cells go through the modality's encoder (the others get a zero latent
        and library), so unmeasured cells never shift the normalisation statistics.

        Returns
        -------
        ``{"z": {modality: latent}, "library": {modality: library size},
        "observed": {modality: (B,) bool}, "target": {modality: values the loss scores}}``
        (ATAC: binarised).
        """
        cov = self._covariates(batch_index)
        z, library, measured, target = {}, {}, {}, {}
        for m, x_m in x.items():
            target[m], lib, encoder_input = self.likelihoods[m].prepare(x_m)
            has = lib.reshape(-1) > 0  # the values are non-negative: counts iff a library
            if observed is not None and m in observed:
                has = has & observed[m].reshape(-1).bool()
            measured[m] = has
            library[m] = lib * has.unsqueeze(-1)
            z[m] = _on_rows(self.encoders[m], has, encoder_input, *cov)
        return {
            MODULE_KEYS.Z: z,
            MODULE_KEYS.LIBRARY: library,
            MODULE_KEYS.OBSERVED: measured,
            MODULE_KEYS.TARGET: target,
        }

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict, **kwargs
    ) -> dict:
        return {
            MODULE_KEYS.Z: inference_outputs[MODULE_KEYS.Z],
            MODULE_KEYS.LIBRARY: inference_outputs[MODULE_KEYS.LIBRARY],
            MODULE_KEYS.BATCH_INDEX: tensors.get(REGISTRY_KEYS.BATCH_KEY),
            MODULE_KEYS.OBSERVED: inference_outputs[MODULE_KEYS.OBSERVED],
        }

    def decode_logits(
        self,
        z: Mapping[str, torch.Tensor],
        batch_index: torch.Tensor | None = None,
        out: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Decode each latent in ``z`` into feature logits (every cell).

        ``out`` (outside autograd): ``{modality: (cells, outputs) tensor}`` that the output
        layer of those modalities writes into, instead of a new block.
        """
        logits = self._decode_pairs(z, [(m, m, None) for m in z], batch_index, out)
        return {m: logits[m, m] for m in z}

    def _decode_pairs(
        self,
        z: Mapping[str, torch.Tensor],
        pairs: Sequence[tuple[str, str, torch.Tensor | None]],
        batch_index: torch.Tensor | None = None,
        out: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[tuple[str, str], torch.Tensor]:
        """Logits of target ``b`` decoded from the latent of ``a``, for each ``(a, b, rows)``.

        The hidden layers of ``b``'s decoder run once per source on its ``rows`` (so batch
        normalisation sees each source's cells alone, as separate decoder calls would); the
        output layer runs once per target on their stacked activations, which gives one weight
        gradient for the largest layer of the model instead of one per source plus their sum.
        Cells outside ``rows`` get the output bias as logits (the loss masks them). A target
        decoded from one source with a tensor in ``out`` is written into that tensor.
        """
        cov = self._covariates(batch_index)
        out = out or {}
        logits = {}
        for b in dict.fromkeys(target for _, target, _ in pairs):
            sources = [(a, rows) for a, target, rows in pairs if target == b]
            decoder = self.decoders[b]
            hidden = [_on_rows(decoder.last_hidden, rows, z[a], *cov) for a, rows in sources]
            if len(hidden) == 1 and b in out:  # the output layer's product, written in place
                layer = decoder.output
                out_b = torch.addmm(layer.bias, hidden[0], layer.weight.t(), out=out[b])
            else:
                out_b = decoder.output(torch.cat(hidden) if len(hidden) > 1 else hidden[0])
            parts = _SplitRows.apply(out_b, [h.shape[0] for h in hidden]) if hidden[1:] else [out_b]
            for (a, _), part in zip(sources, parts, strict=True):
                logits[a, b] = part
        return logits

    @auto_move_data
    def generative(
        self,
        z: Mapping[str, torch.Tensor],
        library: Mapping[str, torch.Tensor],
        batch_index: torch.Tensor | None = None,
        observed: Mapping[str, torch.Tensor] | None = None,
        cross: bool | None = None,
    ) -> dict[str, dict]:
        """Decode each latent in ``z`` into its likelihood.

        With ``cross`` (default: when the model has ``cross_reconstruction``), also decode each
        modality from every other modality's latent, on the cells that have both.

        Returns
        -------
        ``{"px": {modality: distribution}}``, and with ``cross`` ``"px_cross"``:
        ``{(source, target): distribution}``.
        """
        observed = observed or {}
        cross = bool(self.cross_reconstruction) if cross is None else cross
        pairs = [(m, m, observed.get(m)) for m in z]
        if cross:
            for a, b in itertools.permutations(z, 2):
                rows = [observed[m] for m in (a, b) if m in observed]
                pairs.append((a, b, rows[0] & rows[-1] if rows else None))
        logits = self._decode_pairs(z, pairs, batch_index)
        px = {
            (a, b): self.likelihoods[b].distribution(value, library.get(b))
            for (a, b), value in logits.items()
        }
        out = {MODULE_KEYS.PX: {b: px.pop((b, b)) for b in z}}
        if cross:
            out[MODULE_KEYS.PX_CROSS] = px
        return out

    def loss(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict, generative_outputs: dict
    ) -> LossOutput:
        """Weighted sum of the per-modality negative log-likelihoods, averaged over cells.

        A modality counts only for the cells that have it (mosaic data). Each modality's
        unweighted negative log-likelihood (summed over features, averaged over the cells that
        have it) is also reported in ``extra_metrics`` as ``reconstruction_loss_<modality>``.
        With ``cross_reconstruction`` or ``latent_agreement``, their terms are added on the
        cells that have both modalities of a pair and reported as ``cross_reconstruction_loss``
        and ``latent_agreement_loss``.
        """
        observed = inference_outputs[MODULE_KEYS.OBSERVED]
        targets = inference_outputs[MODULE_KEYS.TARGET]  # binarised once, in inference
        nll, metrics = {}, {}
        for m, px in generative_outputs[MODULE_KEYS.PX].items():
            nll[m] = self._nll(m, px, targets[m], observed[m])
            n_m = observed[m].sum().clamp(min=1)
            metrics[f"reconstruction_loss_{m}"] = (nll[m].sum() / n_m).detach()
        weighted = sum(self.reconstruction_weights[m] * v for m, v in nll.items())
        if self.cross_reconstruction or self.latent_agreement:
            cross, agreement = self._cross_modal_terms(
                inference_outputs, generative_outputs, targets
            )
            weighted = weighted + self.cross_reconstruction * cross
            weighted = weighted + self.latent_agreement * agreement
            metrics["cross_reconstruction_loss"] = cross.mean().detach()
            metrics["latent_agreement_loss"] = agreement.mean().detach()
        return LossOutput(
            loss=weighted.mean(),
            reconstruction_loss={f"reconstruction_loss_{m}": v for m, v in nll.items()},
            extra_metrics=metrics,
        )

    def _nll(self, m: str, px, target: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per cell of ``target`` under ``px`` (0 where unobserved).

        The ATAC logits of the decoder are overwritten by their gradient in the backward pass
        (one block of cells x peaks less; :meth:`BernoulliLikelihood.nll`).
        """
        likelihood = self.likelihoods[m]
        options = {"overwrite_logits": True} if likelihood.binary else {}
        value = likelihood.nll(px, target, **options)
        return torch.where(observed, value, torch.zeros_like(value))

    def _cross_modal_terms(
        self,
        inference_outputs: dict,
        generative_outputs: dict,
        targets: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-reconstruction NLL and latent disagreement per cell, summed over pairs."""
        z = inference_outputs[MODULE_KEYS.Z]
        observed = inference_outputs[MODULE_KEYS.OBSERVED]
        ref = next(iter(z.values()))
        cross = ref.new_zeros(ref.shape[0])
        agreement = ref.new_zeros(ref.shape[0])
        if self.cross_reconstruction:
            for (a, b), px in generative_outputs[MODULE_KEYS.PX_CROSS].items():
                nll = self._nll(b, px, targets[b], observed[a] & observed[b])
                cross = cross + self.reconstruction_weights[b] * nll
        if self.latent_agreement:
            for a, b in itertools.combinations(z, 2):
                both = observed[a] & observed[b]
                rows = both.unsqueeze(-1)
                n = both.sum().clamp(min=1)
                var = 0.5 * (
                    _masked_var(z[a], rows, n) + _masked_var(z[b], rows, n)
                ).detach().clamp(min=1e-6)
                diff = ((z[a] - z[b]) ** 2 / var).mean(dim=-1)
                agreement = agreement + torch.where(both, diff, torch.zeros_like(diff))
        return cross, agreement

    @torch.no_grad()
    def fit_library_prior(
        self,
        library: Mapping[str, torch.Tensor],
        library_labels: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        latents: Mapping[str, torch.Tensor] | None = None,
        cell_libraries: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """Fit the depth models of generated cells.

        The per-label log-normal of each count modality's library size, given ``latents`` the
        latent depth model (:class:`LatentDepth`) of every modality, and given
        ``cell_libraries`` the training cells' library sizes (:class:`TrainingDepths`). Also
        records the number of training cells per label (``label_counts``), the default label
        proportions of generated cells.

        Parameters
        ----------
        library
            Observed library sizes ``{modality: (cells_m,)}`` (open peaks for ATAC) of the
            training cells that have the modality.
        library_labels
            Their label codes ``{modality: (cells_m,)}`` (all zero for an unlabelled model).
            Labels without cells get the prior of all cells; labels with one cell get the
            standard deviation of all cells.
        labels
            Label codes of all training cells ``(cells,)``.
        latents
            Latents ``{modality: (cells_m, d_m)}`` of the same cells as ``library``.
        cell_libraries
            Library sizes ``{modality: (cells,)}`` of every training cell, in the order of
            ``labels``, NaN where the cell lacks the modality (count modalities only).
        """
        labels = labels.reshape(-1).long()
        if self.n_labels:
            self.label_counts.copy_(torch.bincount(labels, minlength=self.n_labels).float())
        else:
            self.label_counts.fill_(labels.numel())
        for m, z in (latents or {}).items():
            self.depth.fit(m, z, library[m])
        if cell_libraries is not None:
            self.training_depths.fit(self.label_codes(labels), cell_libraries)
        for m, lib in library.items():
            if self.likelihoods[m].binary:
                continue
            codes = library_labels[m].reshape(-1).long()
            log_lib = torch.log(lib.reshape(-1).double().clamp(min=1.0))
            mean = getattr(self, f"library_log_mean_{m}")
            std = getattr(self, f"library_log_std_{m}")
            overall_std = float(log_lib.std()) if log_lib.numel() > 1 else 0.0
            for c in range(mean.shape[0]):
                values = log_lib[codes == c] if self.n_labels else log_lib
                if values.numel() == 0:
                    values = log_lib
                mean[c] = float(values.mean())
                std[c] = float(values.std()) if values.numel() > 1 else overall_std

    def label_codes(self, labels: torch.Tensor) -> torch.Tensor:
        """Label codes ``(cells,)`` of the depth models: ``labels``, or zeros when unlabelled."""
        labels = labels.reshape(-1).long()
        return labels if self.n_labels else torch.zeros_like(labels)

    def sample_library(self, modality: str, labels: torch.Tensor) -> torch.Tensor:
        """Draw library sizes ``(cells, 1)`` from the per-label log-normal (global RNG)."""
        codes = self.label_codes(labels)
        mean = getattr(self, f"library_log_mean_{modality}")[codes]
        std = getattr(self, f"library_log_std_{modality}")[codes]
        return torch.exp(mean + std * torch.randn_like(mean)).unsqueeze(-1)

    @torch.no_grad()
    def sample_counts(
        self,
        z: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        batch_index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Decode latents and draw counts (NB) and accessibility (Bernoulli).

        Depths follow ``generation_depth``: where it is drawn given the latent (and the depth
        model is fitted), each cell's library size or number of open peaks is drawn given its
        latent; with ``"training_cells"`` (and the training libraries kept) count libraries are
        a training cell's; otherwise count libraries come from the per-label prior and
        accessibility from the decoder's probabilities. Draws use the global RNG: wrap the call in
        :func:`torch.random.fork_rng` for reproducible, side-effect-free sampling.
        """
        logits = self.decode_logits(z, batch_index)
        taken = self.generation_depth == "training_cells" and self.training_depths.fitted()
        libraries = self.training_depths.sample(self.label_codes(labels)) if taken else {}
        out = {}
        for m, lg in logits.items():
            lik = self.likelihoods[m]
            depth = libraries.get(m)
            given_latent = self.generation_depth == "latent" or (
                self.generation_depth in ("latent_atac", "training_cells") and lik.binary
            )
            if given_latent and self.depth.fitted(m):
                depth = self.depth.sample(m, z[m])
            if lik.binary:  # in place: the logits are this call's own (one block, not three)
                if depth is not None:
                    lik.at_depth(lg, depth, out=lg)
                out[m] = torch.bernoulli(lik.normalized(lg, overwrite=True))
            else:
                library = self.sample_library(m, labels) if depth is None else depth.to(lg)
                out[m] = lik.distribution(lg, library).sample()
        return out

    # ------------------------------------------------------------------ sampling pipeline

    @torch.no_grad()
    def decode_normalized(
        self,
        z: Mapping[str, torch.Tensor],
        batch_index: torch.Tensor | None = None,
        library_size: float = 1e4,
        expected: ExpectedValue = "counts",
        out: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Decode latents into normalised values.

        Expression per ``library_size`` counts (RNA, protein) or accessibility probabilities
        (ATAC), one entry per modality of ``z``. ``expected`` says which expectation a count
        modality gives: ``"counts"``, of the counts of a cell measured at ``library_size``
        counts; ``"log1p"``, of their ``log1p``, returned through ``expm1`` (so that ``log1p``
        of the value is that expectation). ``out``: ``{modality: (cells, features) float32
        tensor}`` the values of those modalities are written into (e.g. rows of the caller's
        output array); where the decoder has one output per feature its logits are computed
        there too, so no block of cells x features is allocated for them.
        """
        out = out or {}
        logits = self.decode_logits(
            z, batch_index,
            {m: o for m, o in out.items() if self.likelihoods[m].outputs_per_feature == 1},
        )  # fmt: skip
        values = {}
        for m, v in logits.items():
            likelihood = self.likelihoods[m]
            if expected == "log1p" and not likelihood.binary:
                log1p = likelihood.expected_log1p(v, library_size, library_size)
                values[m] = torch.expm1(log1p, out=out.get(m))
                continue
            v = likelihood.normalized(v, library_size, overwrite=True)  # the call's own logits
            values[m] = out[m].copy_(v) if m in out and v.data_ptr() != out[m].data_ptr() else v
        return values

    def _decoder_batch(self, batch: int | None, n_cells: int) -> torch.Tensor:
        """Batch index ``(n_cells, 1)`` to decode as: ``batch``, or the first batch without one."""
        return torch.full((n_cells, 1), 0 if batch is None else batch, device=self.device)

    @torch.no_grad()
    def generate(
        self,
        labels: torch.Tensor,
        sampler: Sampler,
        batch: int | None = None,
        **sampling,
    ) -> dict[str, torch.Tensor]:
        """Generate cells: sample latents with the diffusion, decode them, draw observations.

        Parameters
        ----------
        labels
            Label code of each cell ``(n_cells,)`` (zeros for an unconditional model).
        sampler
            The sampler, see :meth:`LatentDiffusion.sample`.
        batch
            Batch code to sample and decode as (``None``: the null batch for the diffusion,
            the first batch for the decoder).
        **sampling
            ``n_steps``, ``guidance_scale``, ``generator``, ``progress`` of
            :meth:`LatentDiffusion.sample`.

        Returns
        -------
        ``{modality: (n_cells, features)}`` counts (NB) or accessibility (Bernoulli), drawn with
        the global RNG as :meth:`sample_counts` does.
        """
        latents = self.diffusion.sample(sampler, labels=labels, batch=batch, **sampling)
        return self.sample_counts(latents, labels, self._decoder_batch(batch, len(labels)))

    @torch.no_grad()
    def translate(
        self,
        x: Mapping[str, torch.Tensor],
        targets: Sequence[str],
        sampler: Sampler,
        labels: torch.Tensor | None = None,
        batch: int | None = None,
        n_samples: int = 1,
        library_size: float = 1e4,
        count_labels: torch.Tensor | None = None,
        expected: ExpectedValue = "counts",
        out: Mapping[str, torch.Tensor] | None = None,
        **sampling,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Translate cells: encode the sources, sample the targets' latents given them, decode.

        Parameters
        ----------
        x
            Raw values of the source modalities ``{modality: (n_cells, features)}``, dense or
            (binary likelihoods, e.g. ATAC) ``torch.sparse_csr``.
        targets
            Modalities to return (every modality not in ``x`` is sampled).
        sampler
            The sampler, see :meth:`LatentDiffusion.sample`.
        labels
            Label code of each cell; ``None``: the null label.
        batch
            Batch code to encode, sample and decode as (``None``: see :meth:`generate`).
        n_samples
            Independent translations per cell.
        library_size
            Scale of the normalised count modalities.
        expected
            Expectation of the count modalities, see :meth:`decode_normalized`.
        count_labels
            Label codes whose library-size priors the counts of the first sample are drawn with
            (global RNG); ``None``: no counts.
        out
            With one sample: ``{target: (n_cells, features) float32 tensor}`` the values of
            those targets are written into (see :meth:`decode_normalized`).
        **sampling
            ``n_steps``, ``generator``, ``progress``, ``spread`` of
            :meth:`LatentDiffusion.sample`.

        Returns
        -------
        ``{"mean": {target: values}}`` (normalised values averaged over the samples), with
        ``"variance"`` (over the samples) when ``n_samples > 1`` and ``"counts"`` with
        ``count_labels``; each value ``(n_cells, features)``, float32.
        """
        batch_index = self._decoder_batch(batch, next(iter(x.values())).shape[0])
        source = self.inference(x, batch_index)[MODULE_KEYS.Z]
        total = dict.fromkeys(targets, 0.0)
        total_sq = dict.fromkeys(targets, 0.0)
        result = {}
        for s in range(n_samples):
            latents = self.diffusion.sample(
                sampler, labels=labels, batch=batch, condition=source, **sampling
            )
            latents = {m: latents[m] for m in targets}
            values = self.decode_normalized(
                latents, batch_index, library_size, expected, out if n_samples == 1 else None
            )
            if count_labels is not None and s == 0:
                result["counts"] = self.sample_counts(latents, count_labels, batch_index)
            if n_samples == 1:
                result["mean"] = {m: values[m].float() for m in targets}
                return result
            for m in targets:  # moments in float64: the variance is a difference of them
                v = values[m].double()
                total[m] = total[m] + v
                total_sq[m] = total_sq[m] + v**2
        result["mean"], result["variance"] = {}, {}
        for m in targets:
            mean = total[m] / n_samples
            result["mean"][m] = mean.float()
            result["variance"][m] = (total_sq[m] / n_samples - mean**2).clamp(min=0.0).float()
        return result

    @torch.inference_mode()
    def sample(self, tensors: dict[str, torch.Tensor], n_samples: int = 1) -> dict:
        """Draw reconstructions of the cells in ``tensors`` from each modality's likelihood.

        Returns
        -------
        ``{modality: samples}``, each of shape (``n_samples``, cells, features), or (cells,
        features) when ``n_samples`` is 1.
        """
        _, generative_outputs = self.forward(
            tensors, generative_kwargs={"cross": False}, compute_loss=False
        )
        out = {}
        for m, px in generative_outputs[MODULE_KEYS.PX].items():
            draws = px.sample((n_samples,)) if n_samples > 1 else px.sample()
            out[m] = draws
        return out


def _masked_var(z: torch.Tensor, rows: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Per-dimension variance of the rows of ``z`` selected by ``rows`` ``(B, 1)``, over ``n``."""
    mean = (z * rows).sum(dim=0) / n
    return (((z - mean) ** 2) * rows).sum(dim=0) / n


def _resolve_weights(weights: ReconstructionWeights, n_features: Mapping[str, int]) -> dict:
    if isinstance(weights, str):
        if weights == "sum":
            return dict.fromkeys(n_features, 1.0)
        if weights == "per_feature":
            return {m: 1.0 / n for m, n in n_features.items()}
        raise ValueError(
            f"reconstruction_weights must be 'sum', 'per_feature' or a mapping, got {weights!r}."
        )
    missing = set(n_features) - set(weights)
    extra = set(weights) - set(n_features)
    if missing or extra:
        raise ValueError(
            f"reconstruction_weights must give one weight per modality {list(n_features)}; "
            f"missing {sorted(missing)}, unexpected {sorted(extra)}."
        )
    if any(float(w) < 0 for w in weights.values()):
        raise ValueError(f"reconstruction_weights must be non-negative, got {dict(weights)}.")
    return {m: float(weights[m]) for m in n_features}
