"""The SCDX model: registration, training and getters (the user-facing scvi-tools class)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager, fields
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.train import TrainingPlan

from scdx_scvi._compat import (
    _SCVI_UUID_KEY,
    _SETUP_ARGS_KEY,
    SignalSafeTrainRunner,
    devices_dsp,
    setup_anndata_dsp,
)
from scdx_scvi._constants import MODALITIES
from scdx_scvi.data import check_mudata, data_modalities, resolve_modalities
from scdx_scvi.data._checks import check_indices, check_mapping_keys
from scdx_scvi.data._query import check_training_features
from scdx_scvi.data._validate import check_reserved_columns
from scdx_scvi.module import (
    MODEL_CONFIGURATIONS,
    PRESETS,
    TRAIN_CONFIGURATIONS,
    SCDXModule,
    default_max_epochs,
)
from scdx_scvi.module import atlas_widths as narrowed_widths  # the argument's name is taken
from scdx_scvi.train import (
    FreedMemory,
    autoencoder_optimizer,
    freed_memory_policy,
    release_training_state,
)
from scdx_scvi.train._memory import check_policy
from scdx_scvi.train._modality_stopping import early_stopping_callbacks

from ._checks import check_bool, check_fraction, check_int, check_is_mudata
from ._diffusion_mixin import LatentDiffusionMixin
from ._getters import AutoencoderGettersMixin
from ._regulatory_mixin import RegulatoryMixin
from ._sampling import registered_categories
from ._saving import SavingMixin
from ._translation_mixin import TranslationMixin

if TYPE_CHECKING:
    from scdx_scvi.module._latent_diffusion import Denoiser, LatentScaling, Prediction
    from scdx_scvi.module._likelihoods import EncoderInput, ProteinLikelihood
    from scdx_scvi.module._presets import Architecture, Configuration
    from scdx_scvi.module._scdx_module import GenerationDepth, ReconstructionWeights

logger = logging.getLogger(__name__)

#: Keyword arguments of ``setup_mudata`` passed on to scvi-tools' ``register_fields`` (by ``load``
#: and scArches-style transfer).
_REGISTRATION_KWARGS = {"source_registry", "extend_categories", "allow_missing_labels"}
#: ``setup_mudata`` arguments naming categorical obs columns, and their scvi registry keys.
_REGISTRY_KEYS = {"labels_key": REGISTRY_KEYS.LABELS_KEY, "batch_key": REGISTRY_KEYS.BATCH_KEY}
_OBS_KEYS = tuple(_REGISTRY_KEYS)
#: Options of the configuration that :class:`~scdx_scvi.module.LatentDiffusion` takes as is.
_DIFFUSION_OPTIONS = (
    "latent_scaling",
    "label_dropout",
    "condition_prob",
    "condition_label_dropout",
    "condition_noise",
    "gaussian_residual",
    "prediction",
)


class SCDX(
    RegulatoryMixin,
    TranslationMixin,
    LatentDiffusionMixin,
    AutoencoderGettersMixin,
    SavingMixin,
    UnsupervisedTrainingMixin,
    BaseModelClass,
):
    r"""Multimodal latent diffusion with Dual Cross Attention (scDiffusion-X) :cite:p:`Luo2026`.

    Stage 1 is a multimodal autoencoder: one deterministic encoder/decoder pair per modality
    compresses RNA, ATAC and/or protein into one latent vector per modality. RNA is decoded as
    ``softmax * library`` with a negative binomial likelihood, protein as a background/foreground
    mixture of two (``protein_likelihood``), ATAC as a Bernoulli on binarised accessibility.
    Stage 2 is a DDPM over the scaled latents whose denoiser (a U-Net with Dual Cross Attention
    between the modality streams) learns their joint distribution, conditioned on the cell type;
    :meth:`generate` samples new paired cells from it and :meth:`get_translated_modality`
    translates one modality into another.

    Every option below defaults to the value of the chosen ``configuration``: ``"scdx"``, the
    best measured configuration (the user guide gives the study behind each value), or
    ``"reference"``, scDiffusion-X as its authors implemented it; an option passed explicitly
    overrides the configuration. ``SCDX(mdata, configuration="reference")`` followed by
    ``model.train()`` reproduces the reference, training budget included. The values of both
    are in :data:`scdx_scvi.module.MODEL_CONFIGURATIONS`.

    Parameters
    ----------
    adata
        MuData registered with :meth:`setup_mudata` (at least two of RNA, ATAC, protein).
    configuration
        ``"scdx"`` (default) or ``"reference"``: where every option left at ``None`` takes its
        value from.
    architecture
        Size preset of the reference (``"scdx"``: ``"small"``; the reference: ``"default"``):
        ``"small"`` (RNA 300-150-64, ATAC 512-256-64, layer norm, recommended below 5k genes and
        15k peaks), ``"default"`` (RNA 512-300-100, ATAC 1024-512-100, batch norm) or
        ``"large"`` (RNA 1024-512-150, ATAC 2048-1024-200, layer norm, above 50k genes or 200k
        peaks). Protein: 128-64-16, 256-128-32, 512-256-64.
    atlas_widths
        Beyond 100,000 peaks, narrow the preset's ATAC widths so that the two peak-sized layers
        hold no more weights than at 100,000 peaks (:func:`~scdx_scvi.module.atlas_widths`:
        ``"small"`` at 200,000 peaks is ATAC 256-256-64). ``"scdx"``: on; the reference: off.
    n_hidden
        Override the preset's hidden widths per modality, e.g. ``{"rna": [256, 128]}``; they
        are used as given (no narrowing at atlas scale).
    n_latent
        Override the preset's latent sizes: one int for every modality, a mapping per modality,
        or ``"shared"``: the preset's largest latent size for every modality, which
        cross-reconstruction needs (``"scdx"``: ``"shared"``, 64 with the small preset; the
        reference: the preset's sizes).
    norm
        Override the preset's normalisation (``"batchnorm"`` or ``"layernorm"``).
    dropout_rate
        Dropout after each hidden layer (0, as in the reference).
    encoder_input
        What the RNA/protein encoders see: ``"counts"`` (raw counts, the reference) or
        ``"log1p"`` (log1p of counts per 10k; better conditioned inputs).
    reconstruction_weights
        ``"sum"`` (the reference: per-modality NLLs summed over features, then added, so ATAC
        dominates), ``"per_feature"`` (each modality's NLL divided by its feature count) or a
        mapping ``{modality: weight}``.
    use_batch
        Condition the encoders and decoders on the batch registered with ``batch_key`` (the
        reference has no batch covariate). Ignored when no batch key is registered.
    cross_reconstruction
        Weight of decoding every modality from every other modality's latent during
        autoencoder training (``"scdx"``: 1; the reference: 0), which makes each latent carry
        the others: see :class:`~scdx_scvi.module.SCDXModule`.
    latent_agreement
        Weight of a scale-free penalty on the disagreement between a cell's modality latents
        (``"scdx"`` and the reference: 0).
    denoiser
        Stage-2 denoiser: ``"faithful"`` (the reference DCA U-Net) or ``"improved"`` (feature
        cross-attention with learned feature identity, multi-head, pre-norm, zero-initialised
        outputs).
    n_channels
        Base width of the U-Net (``"scdx"``: 64; the reference: 128).
    source_injection
        Give each denoiser stream the other modalities' latents directly, so that a clean
        source steers the translated target (``"scdx"``: on; the reference: off, its streams
        exchange a few scalars per Dual Cross Attention block): see
        :class:`~scdx_scvi.nn.DCAUNet`.
    latent_scaling
        ``"scalar"`` (the reference: one scale per modality, average latent SD 0.1) or
        ``"per_dim"`` (each latent dimension standardised).
    label_dropout
        Share of training cells whose label is replaced by the null label, which enables
        classifier-free guidance (the reference has no guidance: 0).
    condition_prob
        Share of training cells for which a random subset of their modalities is given clean
        (at ``t = 0``) as a condition while the others are denoised, so that the denoiser also
        learns every conditional ``p(target | source)`` used by the learned translation method
        of :meth:`get_translated_modality` (fast samplers, tens of steps). The joint is still
        learned from the other cells. ``0`` reproduces the reference, which trains the joint only
        and translates with the slow zero-shot methods ``"replacement"`` and ``"guidance"``.
    condition_label_dropout
        Share of the conditional training cells whose label is replaced by the null label (at
        least ``label_dropout``), so that translation without labels, the usual query, is
        learned from the source alone.
    condition_noise
        Largest timestep at which a conditional training cell's source is given (drawn from 0
        to it; 0: clean, as the reference). A noisy source cannot be traced to its training
        cell, so the denoiser learns the target of the source's neighbourhood; translation
        gives the source at the timestep chosen on validation cells (user guide).
    gaussian_residual
        The denoiser predicts the residual over the optimal noise predictor for Gaussian latents
        (see :class:`~scdx_scvi.module.LatentDiffusion`), so that sampling stays on the latents'
        scale after short training. ``False`` is the reference (a plain noise prediction, which
        needs the reference's 800k training steps to be accurate near ``t = T``).
    prediction
        What the denoiser predicts: ``"v"``
        (:math:`\sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1-\bar\alpha_t}\,x_0`), whose loss
        rewards using a condition at every noise level, so that the learned translation
        follows the source (a noise-predicting denoiser learns to ignore it; see
        :class:`~scdx_scvi.module.LatentDiffusion`), or ``"epsilon"``, the noise (the
        reference).
    generation_depth
        Depth of generated cells (and of counts drawn by ``sample_counts=True`` translations).
        ``"training_cells"`` draws each cell's number of open peaks from a log-normal whose
        mean is linear in its ATAC latent, fitted on the training cells, and shifts the ATAC
        probabilities to it; its RNA and protein library sizes are those of one training cell
        of its label, so that they keep the training cells' distribution and their correlation
        with each other. ``"latent_atac"`` draws RNA and protein library sizes from a per-label
        log-normal instead, ``"latent"`` given the latent (worse on small CITE-seq sets: see
        the user guide). ``"label"`` (the reference) uses the per-label log-normal and draws
        ATAC from the decoder's probabilities as they are
        (:class:`~scdx_scvi.module.SCDXModule`).
    protein_likelihood
        How protein counts are modelled: ``"nb_mixture"``, a background and a foreground
        negative binomial per protein, as totalVI's
        (:class:`~scdx_scvi.module.CountMixtureLikelihood`), or ``"nb"`` (the reference), one
        negative binomial per protein as for RNA. See the user guide for their measurements.
    diffusion_batch
        Condition the diffusion on the batch too (needs a registered ``batch_key``).
    denoiser_kwargs
        Further options of :class:`~scdx_scvi.nn.DCAUNet`.

    Examples
    --------
    >>> import mudata as md
    >>> import scdx_scvi
    >>> mdata = md.read_h5mu("multiome.h5mu")
    >>> scdx_scvi.model.SCDX.setup_mudata(
    ...     mdata, labels_key="cell_type", modalities={"rna_layer": "rna", "atac_layer": "atac"}
    ... )
    >>> model = scdx_scvi.model.SCDX(mdata)
    >>> model.train()
    >>> z_rna = model.get_latent_representation(modality="rna")
    >>> accessibility = model.get_normalized_accessibility()
    >>> cells = model.generate(labels={"B cell": 200, "NK": 100}, seed=0)
    """

    _module_cls = SCDXModule
    _training_plan_cls = TrainingPlan
    _train_runner_cls = SignalSafeTrainRunner

    def __init__(
        self,
        adata: MuData | None = None,
        registry: dict | None = None,
        configuration: Configuration = "scdx",
        architecture: Architecture | None = None,
        atlas_widths: bool | None = None,
        n_hidden: Mapping[str, Sequence[int]] | None = None,
        n_latent: int | Mapping[str, int] | Literal["shared"] | None = None,
        norm: Literal["batchnorm", "layernorm"] | None = None,
        dropout_rate: float = 0.0,
        encoder_input: EncoderInput | None = None,
        reconstruction_weights: ReconstructionWeights | None = None,
        use_batch: bool | None = None,
        cross_reconstruction: float | None = None,
        latent_agreement: float | None = None,
        denoiser: Denoiser | None = None,
        n_channels: int | None = None,
        source_injection: bool | None = None,
        latent_scaling: LatentScaling | None = None,
        label_dropout: float | None = None,
        condition_prob: float | None = None,
        condition_label_dropout: float | None = None,
        condition_noise: int | None = None,
        gaussian_residual: bool | None = None,
        prediction: Prediction | None = None,
        generation_depth: GenerationDepth | None = None,
        protein_likelihood: ProteinLikelihood | None = None,
        diffusion_batch: bool = False,
        denoiser_kwargs: dict | None = None,
    ):
        if registry is None:
            self._check_registered(adata)
        super().__init__(adata, registry=registry)
        if configuration not in MODEL_CONFIGURATIONS:
            raise ValueError(
                f"configuration must be one of {list(MODEL_CONFIGURATIONS)}, got {configuration!r}."
            )
        self.configuration = configuration
        given = {k: v for k, v in locals().items() if k in MODEL_CONFIGURATIONS[configuration]}
        options = {
            k: default if given[k] is None else given[k]
            for k, default in MODEL_CONFIGURATIONS[configuration].items()
        }
        self._options = options
        architecture, n_latent = options["architecture"], options["n_latent"]
        encoder_input, use_batch = options["encoder_input"], options["use_batch"]
        denoiser, n_channels = options["denoiser"], options["n_channels"]
        if architecture not in PRESETS:
            raise ValueError(f"architecture must be one of {list(PRESETS)}, got {architecture!r}.")
        preset = PRESETS[architecture]
        self._modality_names = data_modalities(self.registry_[_SETUP_ARGS_KEY]["modalities"])
        mods = tuple(self._modality_names)
        n_features = {m: int(self.summary_stats[MODALITIES[m].summary_stat]) for m in mods}
        hidden = {m: tuple(preset.n_hidden[m]) for m in mods}
        if check_bool(options["atlas_widths"], "atlas_widths") and "atac" in mods:
            hidden["atac"] = narrowed_widths(hidden["atac"], n_features["atac"])
        for m, widths in check_mapping_keys(n_hidden or {}, "n_hidden", mods).items():
            if not isinstance(widths, Sequence) or isinstance(widths, str):
                raise TypeError(f"`n_hidden[{m!r}]` must be a list of widths, got {widths!r}.")
            hidden[m] = tuple(check_int(w, f"n_hidden[{m!r}]") for w in widths)
        if n_latent == "shared":
            latent = dict.fromkeys(mods, max(preset.n_latent[m] for m in mods))
        elif n_latent is None or isinstance(n_latent, Mapping):
            latent = {m: preset.n_latent[m] for m in mods}
            for m, size in check_mapping_keys(n_latent or {}, "n_latent", mods).items():
                latent[m] = check_int(size, f"n_latent[{m!r}]")
        else:
            latent = dict.fromkeys(mods, check_int(n_latent, "n_latent"))
        check_fraction(dropout_rate, "dropout_rate")
        check_int(n_channels, "n_channels")
        for name in ("use_batch", "gaussian_residual", "source_injection"):
            check_bool(options[name], name)
        check_bool(diffusion_batch, "diffusion_batch")
        if diffusion_batch and self.registry_[_SETUP_ARGS_KEY].get("batch_key") is None:
            raise ValueError(
                "`diffusion_batch=True` needs a batch: register `batch_key` in setup_mudata."
            )
        if denoiser_kwargs is not None and not isinstance(denoiser_kwargs, Mapping):
            raise TypeError(f"`denoiser_kwargs` must be a dict or None, got {denoiser_kwargs!r}.")
        self._preset = preset
        self.module = self._module_cls(
            n_features=n_features,
            n_hidden=hidden,
            n_latent=latent,
            n_batch=int(self.summary_stats.n_batch),
            use_batch=use_batch,
            norm=norm or preset.norm,
            dropout_rate=dropout_rate,
            encoder_input=encoder_input,
            reconstruction_weights=options["reconstruction_weights"],
            n_labels=self._n_labels(),
            diffusion_batch=diffusion_batch,
            cross_reconstruction=options["cross_reconstruction"],
            latent_agreement=options["latent_agreement"],
            generation_depth=options["generation_depth"],
            protein_likelihood=options["protein_likelihood"],
            diffusion_kwargs={
                "denoiser": denoiser,
                "n_channels": n_channels,
                **{k: options[k] for k in _DIFFUSION_OPTIONS},
                "denoiser_kwargs": {
                    "source_injection": options["source_injection"],
                    **(denoiser_kwargs or {}),
                },
            },
        )
        self.is_diffusion_trained_ = False
        self.diffusion_history_ = None
        if adata is not None:
            self.feature_names_ = {
                m: adata.mod[mod].var_names.to_numpy().astype(str)
                for m, mod in self._modality_names.items()
            }
        self._model_summary_string = (
            f"SCDX ({configuration!r} configuration): modalities {list(mods)}, latents "
            f"{[latent[m] for m in mods]}, preset {architecture!r}, norm {norm or preset.norm!r}, "
            f"encoder input {encoder_input!r}, batch covariate {self.module.use_batch}; "
            f"denoiser {denoiser!r} (C={n_channels}), conditioned on "
            f"{self.module.n_labels} labels."
        )
        self.init_params_ = self._get_init_params(locals())

    @property
    def options(self) -> dict:
        """Model options in effect: the configuration's, with those passed to ``SCDX(...)``."""
        return dict(self._options)

    @property
    def training_budget(self) -> dict:
        """Training budget of :meth:`train` in effect for the registered data.

        ``{"max_epochs", "early_stopping", "dispersion_lr", "max_steps_diffusion",
        "diffusion_lr", "diffusion_early_stopping"}`` from the configuration, with the number of
        autoencoder epochs of the ``"scdx"`` configuration resolved by
        :func:`~scdx_scvi.module.default_max_epochs` for the number of registered cells
        (``None`` for a model loaded without data).
        """
        budget = dict(TRAIN_CONFIGURATIONS[self.configuration])
        if budget["max_epochs"] is None and self.adata is not None:
            budget["max_epochs"] = default_max_epochs(self.adata.n_obs)
        return budget

    def _n_labels(self) -> int:
        """Return the number of label categories if ``labels_key`` was registered, else 0."""
        if self.registry_[_SETUP_ARGS_KEY].get("labels_key") is None:
            return 0
        return int(self.summary_stats.n_labels)

    # ------------------------------------------------------------------ registration

    @classmethod
    def setup_anndata(cls, *args, **kwargs):
        """Not supported: SCDX is multimodal, use :meth:`setup_mudata`."""
        raise NotImplementedError("SCDX needs a MuData: use `SCDX.setup_mudata(mdata, ...)`.")

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_mudata(
        cls,
        mdata: MuData,
        rna_layer: str | None = None,
        atac_layer: str | None = None,
        protein_layer: str | None = None,
        labels_key: str | None = None,
        batch_key: str | None = None,
        modalities: dict[str, str] | None = None,
        observed_keys: dict[str, str] | None = None,
        **kwargs,
    ):
        """%(summary_mdata)s.

        Registers at least two of RNA (raw counts), ATAC (counts or binary accessibility,
        binarised at > 0) and protein (raw ADT counts). The data is checked first, and every
        problem raises an error that says how to fix it: modalities with different cells or cell
        order, missing layers, NaN/inf or negative values, non-integer RNA/protein counts, cells
        with no counts in any modality, views, labels or batches with missing values.

        Mosaic data (cells that lack a modality) is supported: a cell lacks a modality when its
        row has no counts (pad unmeasured cells with zero rows, e.g. with
        :func:`scdx_scvi.data.pad_mosaic`) or when its entry in the ``observed_keys`` column is
        false. Each autoencoder learns from the cells that have its modality; the diffusion
        learns the joint from paired cells and each marginal from the others. Layers stored
        as scipy sparse *arrays* are re-wrapped as sparse matrices (same values; logged). The
        object is otherwise left as it is, apart from scvi-tools' registration keys.

        Parameters
        ----------
        %(param_mdata)s
        rna_layer
            Layer of the RNA modality with raw counts (``None`` for ``.X``).
        atac_layer
            Layer of the ATAC modality with counts or binary accessibility (``None`` for ``.X``).
        protein_layer
            Layer of the protein modality with raw ADT counts (``None`` for ``.X``).
        labels_key
            Column with cell-type labels (used to condition generation).
        batch_key
            Column with the batch (used by the autoencoder when ``use_batch=True``).
        modalities
            Mapping from these argument names to modality names in ``mdata.mod``, e.g.
            ``{"rna_layer": "rna", "atac_layer": "atac", "labels_key": "rna"}``. A data modality
            is registered if and only if its layer argument is a key here; ``labels_key`` and
            ``batch_key`` are read from ``mdata.obs`` unless mapped to a modality. ``None``
            infers RNA/ATAC/protein from common modality names (``rna``, ``atac``,
            ``protein``, ``prot``, ``adt``, ...).
        observed_keys
            Boolean columns of ``mdata.obs`` saying which cells have a modality, e.g.
            ``{"atac": "has_atac"}`` (keys: ``"rna"``, ``"atac"``, ``"protein"``). Rows of cells
            marked false are ignored whatever they hold. By default, a cell has a modality
            when its row has counts.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        unknown = sorted(set(kwargs) - _REGISTRATION_KWARGS)
        if unknown:
            raise TypeError(
                f"setup_mudata() got unexpected keyword argument(s) {unknown}; layers are named "
                "per modality (`rna_layer`, `atac_layer`, `protein_layer`)."
            )
        modalities = resolve_modalities(
            mdata, modalities, {"labels_key": labels_key, "batch_key": batch_key}
        )
        setup_method_args[_SETUP_ARGS_KEY]["modalities"] = modalities
        layer_args = {"rna": rna_layer, "atac": atac_layer, "protein": protein_layer}
        mods = data_modalities(modalities)
        check_mudata(
            mdata,
            layers={m: (mod, layer_args[m]) for m, mod in mods.items()},
            obs_keys={
                "labels_key": (labels_key, modalities.get("labels_key")),
                "batch_key": (batch_key, modalities.get("batch_key")),
            },
            observed_keys=observed_keys,
        )
        observed_columns = {f"observed_keys[{m!r}]": k for m, k in (observed_keys or {}).items()}
        check_reserved_columns(
            mdata,
            mods.values(),
            {"labels_key": labels_key, "batch_key": batch_key, **observed_columns},
        )
        mudata_fields = [
            fields.MuDataLayerField(
                MODALITIES[m].registry_key,
                layer_args[m],
                mod_key=mod,
                is_count_data=m != "atac",
                mod_required=True,
            )
            for m, mod in mods.items()
        ]
        mudata_fields += [
            fields.MuDataCategoricalObsField(
                REGISTRY_KEYS.BATCH_KEY, batch_key, mod_key=modalities.get("batch_key")
            ),
            fields.MuDataCategoricalObsField(
                REGISTRY_KEYS.LABELS_KEY, labels_key, mod_key=modalities.get("labels_key")
            ),
        ]
        mudata_fields += [
            fields.MuDataNumericalObsField(MODALITIES[m].observed_key, key, mod_key=None)
            for m, key in (observed_keys or {}).items()
        ]
        adata_manager = AnnDataManager(fields=mudata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Registered modalities, in canonical order (``rna``, ``atac``, ``protein``)."""
        return self.module.modalities

    @property
    def modality_names(self) -> dict[str, str]:
        """The ``mdata.mod`` name of each registered modality, e.g. ``{"rna": "gex"}``."""
        return dict(self._modality_names)

    @classmethod
    def _check_registered(cls, mdata: MuData | None) -> None:
        """Refuse data that :meth:`setup_mudata` did not register (before scvi's own message)."""
        if mdata is None:
            raise ValueError(
                "SCDX needs the data it learns from: `SCDX.setup_mudata(mdata, ...)`, then "
                "`SCDX(mdata)` (or `SCDX.load(dir_path)` for a saved model)."
            )
        check_is_mudata(mdata, "SCDX")
        manager = cls._setup_adata_manager_store.get(mdata.uns.get(_SCVI_UUID_KEY))
        if manager is None or manager.adata is not mdata:
            copied = " (it is a copy or a view of a registered one)" if manager is not None else ""
            raise ValueError(
                f"This MuData is not registered with SCDX{copied}: call "
                "`SCDX.setup_mudata(mdata, ...)` on it first."
            )

    def _validate_anndata(self, adata: MuData | None = None, copy_if_view: bool = True) -> MuData:
        """Check a MuData like new data, then register it with this model (or re-register it).

        Every object is checked, the registered one included: a copy shares the registration id
        of the object it was copied from, and scvi-tools would skip the checks for it. The
        checks are a pass over the stored values, cheaper than any getter's pass through the
        encoders.
        """
        if adata is None:
            if self.adata is None:
                raise ValueError(
                    "This model was loaded without data: pass the cells to the method, e.g. "
                    "`model.get_latent_representation(mdata=mdata)`, or load it with "
                    "`SCDX.load(dir_path, adata=mdata)`."
                )
            adata = self.adata
        check_is_mudata(adata, "This SCDX method")
        if copy_if_view and adata.is_view:
            logger.info("Received a view of a MuData; working on a copy.")
            adata = adata.copy()
        check_training_features(adata, self._modality_names, self.feature_names_)
        setup_args = self.registry_[_SETUP_ARGS_KEY]
        modalities = setup_args["modalities"]
        check_mudata(
            adata,
            layers={
                m: (mod, setup_args[MODALITIES[m].setup_arg])
                for m, mod in self._modality_names.items()
            },
            obs_keys={key: (setup_args[key], modalities.get(key)) for key in _OBS_KEYS},
            observed_keys=setup_args.get("observed_keys"),
        )
        self._check_categories(adata)
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    def _check_categories(self, mdata: MuData) -> None:
        """Refuse labels or batches that the model was not set up with.

        scvi-tools' own message suggests a setup option that a getter cannot take.
        """
        setup_args = self.registry_[_SETUP_ARGS_KEY]
        for arg in _OBS_KEYS:
            if setup_args[arg] is None:
                continue
            mod = setup_args["modalities"].get(arg)
            where = "mdata.obs" if mod is None else f"mdata.mod[{mod!r}].obs"
            obs = mdata.obs if mod is None else mdata.mod[mod].obs
            known = registered_categories(self.registry_, _REGISTRY_KEYS[arg])
            unknown = [c for c in pd.unique(obs[setup_args[arg]]) if c not in set(known)]
            if unknown:
                raise ValueError(
                    f"{where}[{setup_args[arg]!r}] has categories the model was not set up "
                    f"with: {unknown[:5]} (known: {known[:10]}). Keep the cells of known "
                    "categories, or rename them to the training categories."
                )

    def _checked_data(
        self, adata: MuData | None, indices: Sequence[int] | None, batch_size: int | None
    ) -> tuple[MuData, np.ndarray | None, int | None]:
        """Return the validated data, cell positions and batch size of a getter."""
        adata = self._validate_anndata(adata)
        indices = check_indices(indices, adata.n_obs)
        return adata, indices, check_int(batch_size, "batch_size", optional=True)

    # ------------------------------------------------------------------ training

    @devices_dsp.dedent
    def train_autoencoder(
        self,
        max_epochs: int | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        dispersion_lr: float | None = None,
        batch_size: int = 256,
        train_size: float = 0.9,
        validation_size: float | None = None,
        early_stopping: bool | Literal["per_modality"] | None = None,
        early_stopping_patience: int = 20,
        gradient_clip_val: float | None = 1.0,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        freed_memory: FreedMemory | None = "release",
        plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the autoencoder (stage 1).

        As the reference: AdamW with the preset's learning rate (1e-3; 5e-4 for ``"small"``) and
        weight decay 1e-4, batch size 256, gradient clipping at 1, 90/10 train/validation
        split. The number of epochs and early stopping follow the model's ``configuration``:
        the reference runs 300 epochs; ``"scdx"`` runs about 200,000 cell passes (25 to 300
        epochs, see :func:`~scdx_scvi.module.default_max_epochs`) and stops early when the
        validation reconstruction loss has not improved for ``early_stopping_patience`` epochs.
        ``model.history`` holds ``reconstruction_loss_<modality>_{train,validation}``.

        Parameters
        ----------
        max_epochs
            Maximum number of passes over the training cells (default: the configuration's).
        lr
            Learning rate (default: the preset's).
        weight_decay
            AdamW weight decay (default: the preset's, 1e-4).
        dispersion_lr
            Learning rate of the negative binomial dispersions of RNA and protein, which get no
            weight decay (default: the configuration's; 0.1 for ``"scdx"``, see
            :func:`~scdx_scvi.train.autoencoder_optimizer`). For the reference, ``None``: the
            dispersions train with the other parameters, at their rate and weight decay.
        batch_size
            Cells per minibatch.
        train_size
            Share of cells used for training; the rest is validation (and test, if
            ``validation_size`` leaves cells over).
        validation_size
            Share of cells for validation (default ``1 - train_size``).
        early_stopping
            Stop when ``reconstruction_loss_validation`` stops improving; ``"per_modality"``:
            freeze each modality as its own does (:class:`~scdx_scvi.train.ModalityEarlyStopping`).
            Default: the configuration's (on for ``"scdx"``). Off under DDP.
        early_stopping_patience
            Epochs without improvement before stopping (or freezing a modality).
        gradient_clip_val
            Clip the gradient norm at this value (``None`` disables clipping).
        %(param_accelerator)s
        %(param_devices)s
        freed_memory
            Under Linux (glibc), what the allocator does with the host memory freed between
            minibatches while this stage trains (:func:`~scdx_scvi.train.freed_memory_policy`):
            ``"release"`` (default) returns every block of 16 MB or more to the system when it
            is freed, for the lowest peak memory; ``"retain"`` keeps freed memory in the
            process for the next minibatch, faster at 10^5 peaks (about 1.4-1.6 times) for a
            higher peak (0.5-0.9 GB more at 200,000 peaks); ``None`` leaves the allocator as it
            is. User guide, "Time and memory".
        plan_kwargs
            Keyword arguments for :class:`scvi.train.TrainingPlan`; they override the above.
        datasplitter_kwargs
            Keyword arguments for :class:`scvi.dataloaders.DataSplitter`.
        **trainer_kwargs
            Keyword arguments for :class:`scvi.train.Trainer` (e.g. ``enable_progress_bar``,
            ``max_steps``, ``precision``, ``strategy="ddp"``: see :meth:`train` for
            multi-device training).
        """
        check_policy(freed_memory, "freed_memory")
        max_epochs = check_int(max_epochs, "max_epochs", optional=True)
        batch_size = check_int(batch_size, "batch_size")
        budget = self.training_budget
        if max_epochs is None:
            max_epochs = budget["max_epochs"]
        if early_stopping is None:
            early_stopping = budget["early_stopping"]
        if dispersion_lr is None:
            dispersion_lr = budget["dispersion_lr"]
        self._invalidate_diffusion()
        # A later stage freezes the autoencoder; make sure this stage trains it again. The
        # denoiser takes no part in this stage: frozen, so that DDP expects no gradient for it.
        self.module.freeze_autoencoder(False)
        self.module.diffusion.denoiser.requires_grad_(False)
        was_trained = self.is_trained_
        plan = {
            "lr": self._preset.lr if lr is None else lr,
            "weight_decay": self._preset.weight_decay if weight_decay is None else weight_decay,
            "eps": 1e-8,
        }
        plan["optimizer"] = "Custom"
        plan["optimizer_creator"] = autoencoder_optimizer(
            self.module.dispersion_parameters(),
            lr=plan["lr"],
            weight_decay=plan["weight_decay"],
            dispersion_lr=dispersion_lr,
        )
        plan.update(plan_kwargs or {})
        trainer_kwargs.setdefault("early_stopping_monitor", "reconstruction_loss_validation")
        trainer_kwargs.setdefault("early_stopping_patience", early_stopping_patience)
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        early_stopping = early_stopping_callbacks(
            early_stopping, self.module.modalities, early_stopping_patience, trainer_kwargs
        )
        if gradient_clip_val is not None:
            trainer_kwargs.setdefault("gradient_clip_val", gradient_clip_val)
        with freed_memory_policy(freed_memory):
            UnsupervisedTrainingMixin.train(
                self,
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                train_size=train_size,
                validation_size=validation_size,
                batch_size=batch_size,
                early_stopping=early_stopping,
                datasplitter_kwargs=datasplitter_kwargs,
                plan_kwargs=plan,
                **trainer_kwargs,
            )
            release_training_state(self.trainer)
        if not self.trainer.global_step:
            self.is_trained_ = was_trained
            raise RuntimeError(
                "`train_autoencoder` ran no optimiser step (see `max_epochs` and the trainer "
                "arguments), so the autoencoder is not trained."
            )

    @devices_dsp.dedent
    def train(
        self,
        max_epochs: int | None = None,
        max_steps_diffusion: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        autoencoder_kwargs: dict | None = None,
        diffusion_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train SCDX: the autoencoder (stage 1), then the latent diffusion (stage 2).

        Parameters
        ----------
        max_epochs
            Maximum epochs of :meth:`train_autoencoder` (default: the configuration's; 300 for
            the reference, 25 to 300 depending on the number of cells for ``"scdx"``).
        max_steps_diffusion
            Maximum optimiser steps of :meth:`train_diffusion` (default: the configuration's;
            800,000 for the reference, 4,000 for ``"scdx"``).
        %(param_accelerator)s
        %(param_devices)s
        autoencoder_kwargs
            Further arguments of :meth:`train_autoencoder`.
        diffusion_kwargs
            Further arguments of :meth:`train_diffusion`.
        **trainer_kwargs
            Keyword arguments for :class:`scvi.train.Trainer`, used by both stages (e.g.
            ``enable_progress_bar``, ``strategy``).

        Notes
        -----
        Multi-device training, as in scvi-tools: pass ``devices`` and ``strategy="ddp"`` (the
        name, so that each stage gets its own strategy object) from a script run with
        ``python script.py``; Lightning starts the other processes by running the script
        again, so every process runs all of it. Each process trains on its share of the cells
        of every epoch (``batch_size`` cells per process and step), the gradients are averaged,
        so all processes hold the same model, and the logged epoch metrics are averaged over
        the processes. ``"ddp_spawn"`` and ``"ddp_notebook"`` are refused: the training state
        would stay in the processes they start. Under DDP scvi-tools turns early stopping off
        (with a warning), so each stage runs its ``max_epochs`` or ``max_steps``; validation
        losses are still logged. The histories are kept by the first process (rank 0), whose
        logger also writes them to ``./lightning_logs`` (or ``log_save_dir``); the other
        processes' histories are empty. Call :meth:`save` in every process: only rank 0
        writes.
        """
        check_int(max_epochs, "max_epochs", optional=True)
        check_int(max_steps_diffusion, "max_steps_diffusion", optional=True)
        if not isinstance(trainer_kwargs.get("strategy", ""), str):
            raise TypeError(
                "`strategy` of `train` must be a name such as 'ddp': a strategy object serves "
                "one trainer, and the two stages need one each. Pass the name, or call "
                "`train_autoencoder` and `train_diffusion` with one object each."
            )
        for name, kwargs in (("autoencoder_kwargs", autoencoder_kwargs),
                             ("diffusion_kwargs", diffusion_kwargs)):  # fmt: skip
            if "batch_size" in (kwargs or {}):
                check_int(kwargs["batch_size"], f"{name}['batch_size']")
        self.is_diffusion_trained_ = False  # retrained below: no stale-diffusion warning
        self.train_autoencoder(
            max_epochs=max_epochs, accelerator=accelerator, devices=devices,
            **{**trainer_kwargs, **(autoencoder_kwargs or {})},
        )  # fmt: skip
        self.train_diffusion(
            max_steps=max_steps_diffusion, accelerator=accelerator, devices=devices,
            **{**trainer_kwargs, **(diffusion_kwargs or {})},
        )  # fmt: skip
