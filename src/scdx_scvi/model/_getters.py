"""The autoencoder getters of SCDX: latents, decoded values and reconstruction error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from mudata import MuData
from scipy import sparse
from scvi import REGISTRY_KEYS

from scdx_scvi._compat import _get_batch_code_from_category
from scdx_scvi._constants import MODALITIES, MODULE_KEYS
from scdx_scvi._docs import getter_dsp
from scdx_scvi.data import stack_rows
from scdx_scvi.data._checks import check_names
from scdx_scvi.data._sparse import scipy_csr

from ._checks import check_bool, check_positive
from ._rows import RowBuffer
from ._sampling import resolve_seed, seeded

LatentModality = Literal["joint", "rna", "atac", "protein"]

#: Name of the feature-list argument of each modality's getter.
_FEATURE_LIST_ARGS = {"rna": "gene_list", "atac": "region_list", "protein": "protein_list"}


class AutoencoderGettersMixin:
    """Getters of :class:`~scdx_scvi.model.SCDX` that use the autoencoder (stage 1) only."""

    def _parse_modalities(self, modality: str) -> tuple[str, ...]:
        if modality == "joint":
            return self.modalities
        if modality not in self.modalities:
            raise ValueError(
                f"Unknown modality {modality!r}; this model has {list(self.modalities)} "
                "(or 'joint' for all of them)."
            )
        return (modality,)

    def _data_loader(self, adata, indices, batch_size, modalities: Sequence[str]):
        keys = [MODALITIES[m].registry_key for m in modalities] + [REGISTRY_KEYS.BATCH_KEY]
        return self._make_data_loader(
            adata=adata, indices=indices, batch_size=batch_size, data_and_attributes=keys
        )

    @torch.inference_mode()
    @getter_dsp.dedent
    def get_latent_representation(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        modality: LatentModality = "joint",
        batch_size: int | None = None,
        *,
        mdata: MuData | None = None,
    ) -> np.ndarray:
        """Return the autoencoder latents of each cell.

        Parameters
        ----------
        %(param_adata)s
        %(param_indices)s
        modality
            ``"rna"``, ``"atac"``, ``"protein"``, or ``"joint"`` for the concatenation of every
            modality's latent in canonical order (what the diffusion stage models).
        %(param_batch_size)s
        %(param_mdata)s

        Returns
        -------
        Array of shape (cells, latent size).
        """
        self._check_if_trained(warn=True)
        adata, indices, batch_size = self._checked_data(_one_of(adata, mdata), indices, batch_size)
        mods = self._parse_modalities(modality)
        rows = RowBuffer(adata.n_obs if indices is None else len(indices))
        for tensors in self._data_loader(adata, indices, batch_size, mods):
            z = self.module.inference(**self.module._get_inference_input(tensors))[MODULE_KEYS.Z]
            rows.write({"z": torch.cat([z[m] for m in mods], dim=-1)})
        return rows.result()["z"].numpy()

    @torch.inference_mode()
    def _get_normalized(
        self,
        modality: str,
        adata: MuData | None,
        indices: Sequence[int] | None,
        feature_list: Sequence[str] | None,
        library_size: float | Literal["observed"],
        transform_batch: str | int | None,
        batch_size: int | None,
        return_numpy: bool,
        threshold: float | None = None,
    ) -> pd.DataFrame | np.ndarray | sparse.csr_matrix:
        self._check_if_trained(warn=True)
        if modality not in self.modalities:
            raise ValueError(f"This model has no {modality!r} modality ({list(self.modalities)}).")
        library_size = _check_library_size(library_size)
        check_bool(return_numpy, "return_numpy")
        if threshold is not None:
            threshold = check_positive(threshold, "threshold")
        feature_list = check_names(feature_list, _FEATURE_LIST_ARGS[modality])
        adata, indices, batch_size = self._checked_data(adata, indices, batch_size)
        names = pd.Index(self.feature_names_[modality])
        columns = np.arange(len(names))
        if feature_list is not None:
            columns = names.get_indexer(list(feature_list))
            if (columns < 0).any():
                missing = [f for f, c in zip(feature_list, columns, strict=True) if c < 0]
                raise ValueError(
                    f"{len(missing)} requested {MODALITIES[modality].feature_noun}(s) are not in "
                    f"the model, e.g. {missing[:5]}."
                )
        batch_code = self._batch_code(transform_batch)
        lik = self.module.likelihoods[modality]
        rows, chunks = RowBuffer(adata.n_obs if indices is None else len(indices)), []
        for tensors in self._data_loader(adata, indices, batch_size, (modality,)):
            inference_inputs = self.module._get_inference_input(tensors)
            inf = self.module.inference(**inference_inputs)
            batch_index = inference_inputs[MODULE_KEYS.BATCH_INDEX]
            if batch_code is not None:
                batch_index = torch.full_like(batch_index, batch_code)
            logits = self.module.decode_logits(inf[MODULE_KEYS.Z], batch_index)[modality]
            size = (
                inf[MODULE_KEYS.LIBRARY][modality] if library_size == "observed" else library_size
            )
            values = lik.normalized(logits, size)[:, columns]
            if threshold is None:
                rows.write({"values": values})
            else:
                chunks.append(scipy_csr(values.masked_fill_(values < threshold, 0.0)))
        if threshold is None:
            values, frame = rows.result()["values"].numpy(), pd.DataFrame
        else:
            values, frame = stack_rows(chunks, len(columns)), pd.DataFrame.sparse.from_spmatrix
        if return_numpy:
            return values
        obs_names = adata.obs_names if indices is None else adata.obs_names[indices]
        return frame(values, index=obs_names, columns=names[columns])

    def _batch_code(self, transform_batch: str | int | None) -> int | None:
        if transform_batch is None:
            return None
        if not self.module.use_batch:
            raise ValueError(
                "transform_batch needs a model conditioned on the batch: register `batch_key` "
                "in setup_mudata and keep `use_batch=True`."
            )
        return int(_get_batch_code_from_category(self.adata_manager, transform_batch)[0])

    @getter_dsp.dedent
    def get_normalized_expression(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        gene_list: Sequence[str] | None = None,
        library_size: float | Literal["observed"] = 1.0,
        transform_batch: str | int | None = None,
        batch_size: int | None = None,
        return_numpy: bool = False,
        *,
        mdata: MuData | None = None,
    ) -> pd.DataFrame | np.ndarray:
        """Return the decoded RNA expression of each cell.

        Parameters
        ----------
        %(param_adata)s
        %(param_indices)s
        gene_list
            Genes to return (default: all, in training order).
        library_size
            Scale of the output: 1 gives proportions, 1e4 counts per 10k, ``"observed"`` each
            cell's own total counts (the reconstruction mean).
        %(param_transform_batch)s
        %(param_batch_size)s
        %(param_return_numpy)s
        %(param_mdata)s

        Returns
        -------
        Cells x genes, as a DataFrame indexed by ``obs_names`` unless ``return_numpy``.
        """
        return self._get_normalized(
            "rna", _one_of(adata, mdata), indices, gene_list, library_size, transform_batch,
            batch_size, return_numpy,
        )  # fmt: skip

    @getter_dsp.dedent
    def get_normalized_accessibility(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        region_list: Sequence[str] | None = None,
        transform_batch: str | int | None = None,
        batch_size: int | None = None,
        return_numpy: bool = False,
        threshold: float | None = None,
        *,
        mdata: MuData | None = None,
    ) -> pd.DataFrame | np.ndarray | sparse.csr_matrix:
        """Return the decoded probability that each peak is accessible in each cell.

        Parameters
        ----------
        %(param_adata)s
        %(param_indices)s
        region_list
            Peaks to return (default: all, in training order).
        %(param_transform_batch)s
        %(param_batch_size)s
        %(param_return_numpy)s
        threshold
            Probabilities below it are set to 0 and the result is sparse, built chunk by chunk
            (a CSR matrix, or a DataFrame of sparse columns), as MultiVI's
            ``get_accessibility_estimates(threshold=...)``. ``None`` (default): dense.
        %(param_mdata)s

        Returns
        -------
        Cells x peaks, as a DataFrame indexed by ``obs_names`` unless ``return_numpy``.
        """
        return self._get_normalized(
            "atac", _one_of(adata, mdata), indices, region_list, 1.0, transform_batch,
            batch_size, return_numpy, threshold,
        )  # fmt: skip

    @getter_dsp.dedent
    def get_normalized_protein(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        protein_list: Sequence[str] | None = None,
        library_size: float | Literal["observed"] = 1.0,
        transform_batch: str | int | None = None,
        batch_size: int | None = None,
        return_numpy: bool = False,
        *,
        mdata: MuData | None = None,
    ) -> pd.DataFrame | np.ndarray:
        """Return the decoded protein (ADT) abundance of each cell.

        Parameters
        ----------
        %(param_adata)s
        %(param_indices)s
        protein_list
            Proteins to return (default: all, in training order).
        library_size
            Scale of the output: 1 gives proportions of the cell's ADT counts, ``"observed"``
            each cell's own total ADT counts (the reconstruction mean).
        %(param_transform_batch)s
        %(param_batch_size)s
        %(param_return_numpy)s
        %(param_mdata)s

        Returns
        -------
        Cells x proteins, as a DataFrame indexed by ``obs_names`` unless ``return_numpy``.
        """
        return self._get_normalized(
            "protein", _one_of(adata, mdata), indices, protein_list, library_size,
            transform_batch, batch_size, return_numpy,
        )  # fmt: skip

    @getter_dsp.dedent
    def get_normalized_modalities(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        library_size: float = 1e4,
        batch_size: int | None = None,
        *,
        mdata: MuData | None = None,
    ) -> dict[str, np.ndarray]:
        """Return every modality's decoded values, as arrays in training feature order.

        Parameters
        ----------
        %(param_adata)s
        %(param_indices)s
        library_size
            Scale of RNA and protein outputs (1e4: counts per 10k).
        %(param_batch_size)s
        %(param_mdata)s

        Returns
        -------
        ``{modality: cells x features}``: expression and protein at ``library_size``,
        accessibility probabilities for ATAC.
        """
        adata = _one_of(adata, mdata)
        getters = {
            "rna": lambda: self.get_normalized_expression(
                adata, indices, library_size=library_size, batch_size=batch_size, return_numpy=True
            ),
            "atac": lambda: self.get_normalized_accessibility(
                adata, indices, batch_size=batch_size, return_numpy=True
            ),
            "protein": lambda: self.get_normalized_protein(
                adata, indices, library_size=library_size, batch_size=batch_size, return_numpy=True
            ),
        }
        return {m: getters[m]() for m in self.modalities}

    @torch.inference_mode()
    @getter_dsp.dedent
    def get_reconstruction_error(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        *,
        mdata: MuData | None = None,
    ) -> dict[str, float]:
        """Return each modality's negative log-likelihood per cell, averaged over the cells.

        Parameters
        ----------
        %(param_adata)s
        %(param_indices)s
        %(param_batch_size)s
        %(param_mdata)s

        Returns
        -------
        ``{"reconstruction_loss_<modality>": value}`` for each modality.
        """
        self._check_if_trained(warn=True)
        adata, indices, batch_size = self._checked_data(_one_of(adata, mdata), indices, batch_size)
        totals: dict[str, float] = {}
        n_cells = 0
        for tensors in self._data_loader(adata, indices, batch_size, self.modalities):
            _, _, losses = self.module(tensors)
            n = next(iter(losses.reconstruction_loss.values())).shape[0]
            n_cells += n
            for key, value in losses.reconstruction_loss.items():
                totals[key] = totals.get(key, 0.0) + float(value.sum())
        return {key: value / n_cells for key, value in totals.items()}

    @torch.inference_mode()
    @getter_dsp.dedent
    def posterior_predictive_sample(
        self,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        seed: int | None = None,
        *,
        mdata: MuData | None = None,
    ) -> dict[str, sparse.csr_matrix]:
        """Draw each cell's reconstruction from the autoencoder's likelihoods (stage 1 only).

        Each cell is encoded, decoded with its own observed library size and one sample is drawn
        from each modality's likelihood (negative binomial counts; Bernoulli accessibility). The
        draws are what the decoder and its likelihood can reach when the latent is exact: the
        ceiling of generation realism, against which generated cells (whose latents come from
        the diffusion) are compared by :func:`~scdx_scvi.metrics.profile_diagnostics` and
        :func:`~scdx_scvi.metrics.generation_score_set`.

        Parameters
        ----------
        %(param_adata)s
        %(param_indices)s
        %(param_batch_size)s
        seed
            Seed of the draws (same seed and ``batch_size``, same draws; the user's random state
            is left as it was); ``None``: a fresh one.
        %(param_mdata)s

        Returns
        -------
        ``{modality: cells x features}`` sparse matrices of counts (0/1 for ATAC), in training
        feature order.
        """
        self._check_if_trained(warn=True)
        adata, indices, batch_size = self._checked_data(_one_of(adata, mdata), indices, batch_size)
        parts: dict[str, list] = {m: [] for m in self.modalities}
        with seeded(resolve_seed(seed), self.module.device):
            for tensors in self._data_loader(adata, indices, batch_size, self.modalities):
                for m, draws in self.module.sample(tensors).items():
                    parts[m].append(scipy_csr(draws))
        return {
            m: stack_rows(chunks, n_cols=self.module.n_features[m]) for m, chunks in parts.items()
        }


def _check_library_size(value: object) -> float | str:
    if isinstance(value, str):
        if value != "observed":
            raise ValueError(
                f"`library_size` must be a number above 0 or 'observed', got {value!r}."
            )
        return value
    return check_positive(value, "library_size")


def _one_of(adata: MuData | None, mdata: MuData | None) -> MuData | None:
    if adata is not None and mdata is not None:
        raise ValueError("Pass the data as `adata` or as `mdata`, not both.")
    return adata if adata is not None else mdata
