"""Cross-modality translation of SCDX: source modality in, target modality out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi import REGISTRY_KEYS

from scdx_scvi._compat import _SETUP_ARGS_KEY
from scdx_scvi._constants import MODALITIES, MODULE_KEYS
from scdx_scvi.data import align_features
from scdx_scvi.diffusion import (
    get_sampler,
    guidance_translate,
    replacement_translate,
    sample_noise,
    with_labels,
)

logger = logging.getLogger(__name__)

TranslationMethod = Literal["learned", "replacement", "guidance"]

#: Default number of denoiser evaluations of each translation method.
DEFAULT_TRANSLATION_STEPS = {"learned": 25, "replacement": 1000, "guidance": 1000}


class TranslationMixin:
    """``get_translated_modality`` of :class:`~scdx_scvi.model.SCDX`."""

    def _modality(self, name: str, what: str) -> str:
        """Canonical name of a registered modality given by canonical or ``mdata.mod`` name."""
        by_mod = {mod: m for m, mod in self._modality_names.items()}
        if name in self.modalities:
            return name
        if name in by_mod:
            return by_mod[name]
        known = sorted({*self.modalities, *by_mod})
        if name in MODALITIES:
            raise ValueError(
                f"{what}={name!r}: the model was not trained on {name}; it knows {known}."
            )
        raise ValueError(f"Unknown {what} {name!r}; the model knows {known}.")

    def _translation_roles(
        self, source: str | Sequence[str], target: str | Sequence[str] | None
    ) -> tuple[list[str], list[str]]:
        sources = [source] if isinstance(source, str) else list(source)
        sources = [self._modality(m, "source_modality") for m in sources]
        if target is None:
            targets = [m for m in self.modalities if m not in sources]
        else:
            targets = [target] if isinstance(target, str) else list(target)
            targets = [self._modality(m, "target_modality") for m in targets]
        if not sources or not targets:
            raise ValueError("Give at least one source and one target modality.")
        overlap = set(sources) & set(targets)
        if overlap:
            raise ValueError(f"{sorted(overlap)} cannot be both source and target.")
        return sources, targets

    def _query_sources(
        self,
        query: AnnData | MuData | None,
        sources: list[str],
        layer: str | None,
        indices: Sequence[int] | None,
    ) -> tuple[dict[str, sparse.csr_matrix], pd.DataFrame]:
        """Source values in training feature order, and the ``obs`` of the query cells."""
        setup_args = self.registry_[_SETUP_ARGS_KEY]
        if query is None:
            query = self.adata
        if isinstance(query, MuData):
            tables = {}
            for m in sources:
                mod = self._modality_names[m]
                if mod not in query.mod:
                    raise ValueError(
                        f"The query MuData has no modality {mod!r} ({m}); it has "
                        f"{list(query.mod.keys())}."
                    )
                tables[m] = (query.mod[mod], setup_args[MODALITIES[m].setup_arg], f"mod[{mod!r}]")
            obs = query.obs
        elif isinstance(query, AnnData):
            if len(sources) > 1:
                raise ValueError(
                    "An AnnData holds one modality; pass a MuData to translate from "
                    f"{sources} together."
                )
            tables = {sources[0]: (query, layer, "adata")}
            obs = query.obs
        else:
            raise TypeError(f"Expected an AnnData or a MuData, got {type(query).__name__}.")
        x = {}
        for m, (adata, m_layer, where) in tables.items():
            if adata.n_obs != len(obs) or not adata.obs_names.equals(obs.index):
                raise ValueError(
                    f"{where} does not have the MuData's cells in the same order; pad or align "
                    "the modalities first (see `scdx_scvi.data.pad_mosaic`)."
                )
            x[m], _ = align_features(adata, self.feature_names_[m], m, m_layer, where)
        if indices is not None:
            indices = np.asarray(indices)
            x = {m: v[indices] for m, v in x.items()}
            obs = obs.iloc[indices]
        return x, obs.loc[:, ~obs.columns.str.startswith("_scvi_")].copy()

    def _query_labels(
        self, labels: str | Sequence[str] | None, obs: pd.DataFrame
    ) -> np.ndarray | None:
        """Label codes of the query cells, or ``None`` for the null (unconditional) label."""
        if labels is None:
            return None
        if self.module.diffusion.n_labels == 0:
            raise ValueError("The model was not trained with labels (`labels_key`).")
        if isinstance(labels, str):
            if labels not in obs.columns:
                raise KeyError(f"`labels={labels!r}` is not a column of the query obs.")
            labels = obs[labels]
        labels = np.asarray(labels).astype(str)
        if len(labels) != len(obs):
            raise ValueError(f"Got {len(labels)} labels for {len(obs)} cells.")
        categories = [str(c) for c in self._categories(REGISTRY_KEYS.LABELS_KEY)]
        unknown = sorted(set(labels) - set(categories))
        if unknown:
            raise ValueError(f"Unknown label(s) {unknown[:5]}; the model knows {categories}.")
        codes = pd.Categorical(labels, categories=categories).codes.astype(np.int64)
        self._check_trained_labels(codes, categories)
        return codes

    def get_translated_modality(
        self,
        adata: AnnData | MuData | None = None,
        source_modality: str | Sequence[str] = "rna",
        target_modality: str | Sequence[str] | None = "atac",
        method: TranslationMethod = "learned",
        sampler: Literal["mean", "dpm++2m", "ddim", "ddpm"] = "mean",
        n_steps: int | None = None,
        n_samples: int = 1,
        labels: str | Sequence[str] | None = None,
        batch: str | None = None,
        guidance_strength: float = 3.0,
        library_size: float = 1e4,
        sample_counts: bool = False,
        layer: str | None = None,
        indices: Sequence[int] | None = None,
        seed: int | None = None,
        batch_size: int = 1024,
        clip_x0: float | Literal["auto"] | None = "auto",
        return_type: Literal["anndata", "numpy"] = "anndata",
        progress: bool = False,
        *,
        mdata: MuData | None = None,
    ) -> AnnData | MuData | np.ndarray | dict[str, np.ndarray]:
        """Translate cells measured in one modality into another (e.g. RNA -> ATAC).

        The source is encoded by its autoencoder, the diffusion samples the target latent
        given the source latent, and the target decoder turns it into normalised values.
        Cells are processed in chunks of ``batch_size``, so memory does not grow with the
        query.

        Parameters
        ----------
        adata
            The query: an **AnnData holding only the source modality** (features matched to
            the training features by name; missing ones are filled with zeros and reported), or
            a MuData with the source modality (the target may be absent). ``None``: the
            registered MuData (e.g. to translate the cells of mosaic data that lack the target).
        source_modality
            ``"rna"``, ``"atac"`` or ``"protein"`` (or the name in ``mdata.mod``); several with
            a MuData query (three-modality models).
        target_modality
            The modality (or modalities) to produce; ``None``: every other registered one.
        method
            ``"learned"`` (default): sample ``p(target | source)`` that the denoiser learned
            with ``condition_prob > 0``, with a fast ``sampler``. The reference's zero-shot
            methods for a joint model, with ancestral DDPM and 1000 steps by default:
            ``"replacement"`` (the noised source replaces the source stream at every step) and
            ``"guidance"`` (plus the gradient of the source reconstruction error, scale
            ``guidance_strength``; one backward pass per step).
        sampler
            Sampler of the ``"learned"`` method. ``"mean"`` (default) returns the denoiser's
            estimate of the conditional mean latent ``E[z_target | source]`` in one evaluation
            (:class:`~scdx_scvi.diffusion.MeanSampler`): deterministic, the point estimate for
            imputation and correlation-type analyses. ``"dpm++2m"``, ``"ddim"`` or ``"ddpm"``
            draw samples of ``p(target | source)`` (realistic single cells with their
            variability; ``n_samples > 1`` gives the uncertainty).
        n_steps
            Denoiser evaluations (default: 1 with ``sampler="mean"``, 25 for the other
            samplers of ``"learned"``, 1000 for the zero-shot methods).
        n_samples
            Independent translations per cell. With more than one, ``X`` is their mean and
            ``layers["variance"]`` their per-cell, per-feature variance (the uncertainty).
        labels
            Optional cell types of the query cells (a column of its ``obs`` or one label per
            cell) to condition on; ``None`` uses the null label (the model was trained with
            label dropout).
        batch
            Batch to encode and decode as, for a batch-conditioned model (default: the first).
        guidance_strength
            Scale of the ``"guidance"`` method (3 in the reference).
        library_size
            Scale of translated RNA and protein (values per ``library_size`` counts).
        sample_counts
            Also draw counts (RNA/protein: negative binomial with a library size from the
            per-label prior; ATAC: Bernoulli) from the first sample, in ``layers["counts"]``.
        layer
            Layer of an AnnData query with the raw source values (``None``: ``.X``). A MuData
            query uses the layers registered at setup.
        indices
            Positions of the query cells to translate (default: all).
        seed
            Seed of all random draws (same seed and ``batch_size``, same output); ``None``
            draws a fresh seed.
        batch_size
            Cells per chunk.
        clip_x0
            Clamp of the predicted clean latent, see :meth:`generate`.
        return_type
            ``"anndata"``: an AnnData of the target (``obs`` of the query, ``var`` the training
            target features; a MuData of the targets if there are several); ``"numpy"``: the
            translated values as an array (a dict of arrays for several targets).
        progress
            Show a progress bar over the sampler steps.
        mdata
            Alias of ``adata``.

        Returns
        -------
        Translated values: expression per ``library_size`` counts (RNA), accessibility
        probability (ATAC) or protein per ``library_size`` counts.

        Examples
        --------
        >>> rna_only = sc.read_h5ad("rna_only_cells.h5ad")
        >>> atac = model.get_translated_modality(rna_only, "rna", "atac")
        >>> atac.X  # accessibility probabilities, cells x training peaks
        """
        if mdata is not None:
            if adata is not None:
                raise ValueError("Pass the query as `adata` or `mdata`, not both.")
            adata = mdata
        if not getattr(self, "is_diffusion_trained_", False):
            raise RuntimeError("Train the diffusion first: `model.train()` or `train_diffusion()`.")
        sources, targets = self._translation_roles(source_modality, target_modality)
        diffusion = self.module.diffusion
        if method not in DEFAULT_TRANSLATION_STEPS:
            raise ValueError(
                f"method must be one of {list(DEFAULT_TRANSLATION_STEPS)}, got {method!r}."
            )
        if method == "learned" and diffusion.condition_prob == 0:
            raise ValueError(
                "This model's diffusion was trained on the joint only (condition_prob=0, the "
                "reference), so it has no learned conditional: use method='replacement' or "
                "'guidance', or build the model with condition_prob > 0 and retrain."
            )
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
        if method == "learned" and sampler == "mean" and n_samples > 1:
            raise ValueError(
                "sampler='mean' gives one deterministic estimate per cell; to draw several "
                "samples (n_samples > 1) use a sampler such as sampler='dpm++2m'."
            )
        if return_type not in ("anndata", "numpy"):
            raise ValueError(f"return_type must be 'anndata' or 'numpy', got {return_type!r}.")
        x, obs = self._query_sources(adata, sources, layer, indices)
        codes = self._query_labels(labels, obs)
        one_step = method == "learned" and sampler == "mean"
        n_steps = 1 if one_step else n_steps or DEFAULT_TRANSLATION_STEPS[method]
        seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)
        diffusion_batch, decoder_batch = self._generation_batch(batch)
        n_cells = len(obs)
        if codes is None and sample_counts:  # library sizes need a label: training proportions
            p = self.module.label_counts.cpu().double().numpy()
            codes_for_library = np.random.default_rng(seed).choice(len(p), n_cells, p=p / p.sum())
        else:
            codes_for_library = codes

        device = self.module.device
        generator = torch.Generator(device=device).manual_seed(seed)
        clip = self._clip_x0(clip_x0)
        draw = get_sampler(sampler, clip_x0=clip) if method == "learned" else None
        # every non-source modality is sampled (the others are marginalised), targets are kept
        sampled = [m for m in self.modalities if m not in sources]
        dims = {m: diffusion.denoiser.latent_dims[m] for m in sampled}
        means = {m: [] for m in targets}
        variances = {m: [] for m in targets}
        counts = {m: [] for m in targets}
        self.module.eval()
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + 1)
            for start in range(0, n_cells, batch_size):
                stop = min(start + batch_size, n_cells)
                n = stop - start
                batch_index = torch.full((n, 1), decoder_batch, device=device)
                with torch.no_grad():
                    tensors = {
                        m: torch.as_tensor(v[start:stop].toarray(), device=device)
                        for m, v in x.items()
                    }
                    z = self.module.inference(tensors, batch_index)[MODULE_KEYS.Z]
                    source = diffusion.scale(z)
                y = (
                    torch.full((n,), diffusion.n_labels, device=device)
                    if codes is None
                    else torch.as_tensor(codes[start:stop], device=device)
                )
                cond = torch.stack([y, torch.full_like(y, diffusion_batch)], dim=1)
                eps_fn = with_labels(diffusion.labelled_denoiser(), cond)
                total = dict.fromkeys(targets, 0.0)
                total_sq = dict.fromkeys(targets, 0.0)
                for s in range(n_samples):
                    noise = sample_noise(dims, n, generator)
                    if method == "learned":
                        out = draw(
                            eps_fn, noise, diffusion.schedule, n_steps, generator,
                            condition=source, progress=progress,
                        )  # fmt: skip
                    elif method == "replacement":
                        out = replacement_translate(
                            eps_fn, source, noise, diffusion.schedule, n_steps, generator,
                            clip_x0=clip, progress=progress,
                        )  # fmt: skip
                    else:
                        out = guidance_translate(
                            eps_fn, source, noise, diffusion.schedule, n_steps, generator,
                            scale=guidance_strength, clip_x0=clip, progress=progress,
                        )  # fmt: skip
                    with torch.no_grad():
                        latents = diffusion.unscale({m: out[m] for m in targets})
                        logits = self.module.decode_logits(latents, batch_index)
                        for m in targets:
                            values = self.module.likelihoods[m].normalized(logits[m], library_size)
                            total[m] = total[m] + values.double()
                            total_sq[m] = total_sq[m] + values.double() ** 2
                        if sample_counts and s == 0:
                            y_lib = torch.as_tensor(codes_for_library[start:stop], device=device)
                            drawn = self.module.sample_counts(latents, y_lib, batch_index)
                            for m in targets:
                                counts[m].append(
                                    sparse.csr_matrix(drawn[m].cpu().numpy(), dtype=np.float32)
                                )
                for m in targets:
                    mean = total[m] / n_samples
                    means[m].append(mean.float().cpu().numpy())
                    if n_samples > 1:
                        var = (total_sq[m] / n_samples - mean**2).clamp(min=0.0)
                        variances[m].append(var.float().cpu().numpy())

        def stack(parts: list, m: str) -> np.ndarray:
            width = len(self.feature_names_[m])
            return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)

        if return_type == "numpy":
            result = {m: stack(means[m], m) for m in targets}
            return result[targets[0]] if len(targets) == 1 else result
        info = {
            "method": method,
            "sampler": sampler if method == "learned" else "ddpm",
            "n_steps": int(n_steps),
            "n_samples": int(n_samples),
            "source_modality": sources,
            "seed": seed,
            "library_size": float(library_size),
        }
        out = {}
        for m in targets:
            layers = {}
            if n_samples > 1:
                layers["variance"] = stack(variances[m], m)
            if sample_counts:
                layers["counts"] = sparse.vstack(counts[m], format="csr")
            out[self._modality_names[m]] = AnnData(
                X=stack(means[m], m),
                obs=obs.copy(),
                var=pd.DataFrame(index=pd.Index(self.feature_names_[m], dtype=str)),
                layers=layers,
                uns={"scdx_translation": {**info, "target_modality": m}},
            )
        if len(out) == 1:
            return next(iter(out.values()))
        result = MuData(out)
        result.obs = obs.loc[result.obs_names].copy()
        return result
