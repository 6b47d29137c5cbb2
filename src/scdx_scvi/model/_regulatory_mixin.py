"""Regulatory links and in-silico perturbation of SCDX (see :mod:`._link_scores`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from scdx_scvi._compat import _SETUP_ARGS_KEY
from scdx_scvi._constants import MODALITIES
from scdx_scvi.data import (
    DEFAULT_WINDOW,
    align_features,
    candidate_pairs,
    gene_tss,
    peak_coordinates,
)

from ._link_scores import (
    attention_link_scores,
    background_scores,
    correlation_rows,
    correlation_values,
    distance_link_scores,
    gradient_rows,
    source_strata,
)
from ._sampling import check_diffusion_trained, label_categories, query_labels

LinkMethod = Literal["gradient", "attention", "correlation", "distance"]
Perturbation = Literal["knockout", "overexpress", "set"]

#: Distance filter (bp) of the reference's attention pipeline.
REFERENCE_MAX_DISTANCE = 120_000
#: Default multiplier of ``perturbation="overexpress"`` for count modalities.
OVEREXPRESSION_FACTOR = 4.0


class RegulatoryMixin:
    """Regulatory links and in-silico perturbation of :class:`~scdx_scvi.model.SCDX`."""

    # ------------------------------------------------------------------ shared helpers

    def _link_roles(self, source: str, target: str) -> tuple[str, str]:
        source = self._modality(source, "source_modality")
        target = self._modality(target, "target_modality")
        if source == target:
            raise ValueError(
                f"source_modality and target_modality are both {source!r}; links and "
                "perturbations go from one modality to another, e.g. source_modality='atac', "
                "target_modality='rna'."
            )
        return source, target

    def _query_mudata(self, adata: MuData | None, modalities: Sequence[str]) -> MuData:
        mdata = self.adata if adata is None else adata
        if not isinstance(mdata, MuData):
            raise TypeError(
                f"Expected a MuData with the modalities {list(modalities)}, got "
                f"{type(mdata).__name__}."
            )
        for m in modalities:
            if self._modality_names[m] not in mdata.mod:
                raise ValueError(
                    f"The MuData has no modality {self._modality_names[m]!r} ({m}); it has "
                    f"{list(mdata.mod.keys())}."
                )
        return mdata

    def _modality_values(self, mdata: MuData, m: str) -> sparse.csr_matrix:
        """Raw values of modality ``m`` in training feature order (the registered layer)."""
        mod = self._modality_names[m]
        layer = self.registry_[_SETUP_ARGS_KEY][MODALITIES[m].setup_arg]
        values, _ = align_features(
            mdata.mod[mod], self.feature_names_[m], m, layer, f"mod[{mod!r}]"
        )
        return values

    def _feature_var(self, mdata: MuData, m: str) -> pd.DataFrame:
        """``var`` of modality ``m`` in training feature order (the registered data's if absent)."""
        mod = self._modality_names[m]
        source = mdata if mod in mdata.mod else self.adata
        return source.mod[mod].var.reindex(self.feature_names_[m])

    def _feature_index(self, m: str, features, argument: str) -> np.ndarray:
        names = pd.Index(self.feature_names_[m])
        features = np.atleast_1d(np.asarray(features).astype(str))
        positions = names.get_indexer(features)
        if (positions < 0).any():
            missing = features[positions < 0][:5].tolist()
            raise ValueError(
                f"{argument}: {int((positions < 0).sum())} {MODALITIES[m].feature_noun}(s) are "
                f"not {m} features of the model, e.g. {missing}."
            )
        return positions

    # ------------------------------------------------------------------ candidates

    def _link_candidates(
        self,
        mdata: MuData,
        source: str,
        target: str,
        candidates: pd.DataFrame | None,
        tss,
        window: int | None,
    ) -> pd.DataFrame:
        """Candidate pairs with positions (``target_idx``, ``source_idx``) and ``distance``."""
        t_noun, s_noun = MODALITIES[target].feature_noun, MODALITIES[source].feature_noun
        genomic = {source, target} == {"rna", "atac"}
        coords = None
        if genomic:
            try:
                peaks = peak_coordinates(self._feature_var(mdata, "atac"))
                coords = (gene_tss(self._feature_var(mdata, "rna"), tss), peaks)
            except ValueError as error:
                if candidates is None and window is not None:
                    raise ValueError(
                        f"No genomic coordinates for the candidate pairs: {error} Or pass "
                        "`window=None` to score every gene–peak pair."
                    ) from error
        if candidates is not None:
            if not isinstance(candidates, pd.DataFrame) or not {t_noun, s_noun} <= set(
                candidates.columns
            ):
                raise ValueError(
                    f"`candidates` must be a DataFrame with columns {t_noun!r} and {s_noun!r}."
                )
            pairs = candidates[[t_noun, s_noun]].astype(str).drop_duplicates()
            pairs = pairs.reset_index(drop=True)
        elif coords is not None and window is not None:
            pairs = candidate_pairs(*coords, window=window)[[t_noun, s_noun]]
        else:
            t_names, s_names = self.feature_names_[target], self.feature_names_[source]
            pairs = pd.DataFrame(
                {t_noun: np.repeat(t_names, len(s_names)), s_noun: np.tile(s_names, len(t_names))}
            )
        if pairs.empty:
            raise ValueError(
                f"The candidate set is empty: no {s_noun} lies within window={window} bp of a "
                f"{t_noun}'s TSS. Check that both use the same chromosome names ('chr1' vs '1') "
                "and genome, widen `window`, or pass `candidates`."
            )
        pairs["target_idx"] = self._feature_index(target, pairs[t_noun], "candidates")
        pairs["source_idx"] = self._feature_index(source, pairs[s_noun], "candidates")
        pairs["distance"] = np.nan
        if coords is not None:
            genes, peaks = coords
            gene_chrom = genes["chrom"].reindex(self.feature_names_["rna"]).fillna("")
            pairs.attrs["layout"] = {
                "chrom": {"rna": gene_chrom.to_numpy(str), "atac": peaks["chrom"].to_numpy(str)},
                "width": (peaks["end"] - peaks["start"]).to_numpy(),
            }
            gene_names = pairs["gene"].to_numpy()
            located = np.isin(gene_names, genes.index)
            peak_rows = peaks.loc[pairs.loc[located, "peak"]]
            centre = (peak_rows["start"].to_numpy() + peak_rows["end"].to_numpy()) // 2
            gene_rows = genes.loc[gene_names[located]]
            same = gene_rows["chrom"].to_numpy() == peak_rows["chrom"].to_numpy()
            distance = np.where(same, np.abs(centre - gene_rows["tss"].to_numpy()), np.inf)
            pairs.loc[located, "distance"] = distance.astype(float)
        return pairs

    # ------------------------------------------------------------------ links

    def get_regulatory_links(
        self,
        adata: MuData | None = None,
        source_modality: str = "atac",
        target_modality: str = "rna",
        method: LinkMethod = "gradient",
        candidates: pd.DataFrame | None = None,
        tss: pd.DataFrame | str | os.PathLike | None = None,
        window: int | None = DEFAULT_WINDOW,
        groupby: str | None = None,
        indices: Sequence[int] | None = None,
        n_cells: int = 500,
        n_background: int = 200,
        max_distance: float | None = REFERENCE_MAX_DISTANCE,
        seed: int = 0,
        attention_kwargs: dict | None = None,
    ) -> pd.DataFrame:
        r"""Score regulatory links between the features of two modalities (e.g. peak -> gene).

        Every method scores the same candidate pairs: for RNA and ATAC with genomic
        coordinates, the gene–peak pairs whose peak centre lies within ``window`` bp of the
        gene's TSS; otherwise a list given in ``candidates`` or every pair. Methods:

        * ``"gradient"`` (default, model-based): the derivative of the model's translation of
          the source into the target (``get_translated_modality(sampler="mean")``, the
          learned conditional mean) with respect to the source, averaged over cells,
          :math:`\mathrm{mean}_c\, \partial \log \hat y_{cg} / \partial a_{cp}`: the
          first-order change of gene ``g``'s log expression when peak ``p`` opens in the
          cells (signed; deterministic; ``raw_score``), z-scored against ``n_background``
          matched peaks as the correlation baseline (``score``). Cost: one backward pass per
          candidate gene over ``n_cells`` cells (batched), about
          ``genes x cells x peaks x width`` multiply-adds of the first ATAC encoder layer;
          memory bounded by chunking (at most 2^25 gradient floats, 128 MiB, whatever the
          number of peaks and genes). Needs a model trained with ``condition_prob > 0``; the
          links are only as informative as the model's translation.
        * ``"attention"``: the reference scDiffusion-X pipeline, faithfully: Dual Cross
          Attention of the middle block (DCA #2) at ``t = 1`` with one noise draw (``seed``),
          top positions of the cross map, hidden units -> genes and peaks by input gradients,
          products of the top genes and peaks, pairs farther apart than ``max_distance``
          (120 kb; from the TSS here, from the gene body in the reference) dropped (score 0).
          The raw (non-EMA) denoiser weights and the cells' labels, as the reference. Most
          candidates score 0 (not selected).
        * ``"correlation"`` (Signac ``LinkPeaks``-like baseline): Pearson correlation across
          cells of log-normalised expression and binarised accessibility, z-scored against
          ``n_background`` peaks matched for detection rate and width (on other chromosomes
          than the gene; no GC content without a genome sequence). Uses all cells.
        * ``"distance"`` (baseline): minus the peak centre–TSS distance.

        Parameters
        ----------
        adata
            MuData with the modalities (the registered layers); ``None``: the registered data.
        source_modality
            The regulating modality (``"atac"``; or ``"rna"``, ``"protein"``).
        target_modality
            The regulated modality (``"rna"``; or ``"atac"``, ``"protein"``).
        method
            ``"gradient"``, ``"attention"``, ``"correlation"`` or ``"distance"``.
        candidates
            Pairs to score: a DataFrame with a column per feature noun (``"gene"`` and
            ``"peak"`` for RNA and ATAC, ``"protein"`` for protein). ``None``: built from the
            coordinates and ``window``.
        tss
            TSS of the genes: a BED file (the TSS is the centre of each row, as the TSS tables
            in ``shared/data/annotations``) or a table from
            :func:`~scdx_scvi.data.read_tss_bed`. ``None``: the RNA ``var`` columns
            (``chrom`` and ``tss`` or ``start``). Peaks are placed by the ATAC ``var`` columns
            ``chrom``/``start``/``end`` or by their names (``chr1_100_200``,
            ``chr1:100-200``, ``chr1-100-200``); see :mod:`scdx_scvi.data`.
        window
            Largest peak centre–TSS distance (bp) of a candidate pair (150 kb, GLUE's
            window). ``None``: every pair (e.g. without coordinates).
        groupby
            Column of ``obs`` (e.g. cell type): score the links within each group's cells;
            the result has a column of that name.
        indices
            Cells to use (default: all).
        n_cells
            Most cells (per group) the model-based methods use, drawn at random (``seed``).
        n_background
            Background peaks per gene of ``"correlation"`` (Signac: 200).
        max_distance
            Distance filter of ``"attention"`` (the reference: 120 kb); ``None`` keeps all.
        seed
            Seed of the cell subsample, of the noise draw (``"attention"``) and of the
            background draw (``"correlation"``).
        attention_kwargs
            Further options of the ``"attention"`` pipeline: ``n_positions`` (15),
            ``n_top_target`` (100 genes), ``n_top_source`` (200 peaks), ``timestep`` (1),
            ``site`` (``"middle"``).

        Returns
        -------
        One row per candidate pair (and group): the two features (e.g. ``gene``, ``peak``),
        ``score`` (higher: stronger link), ``distance`` (bp; NaN without coordinates, inf on
        different chromosomes), ``method``, and the ``groupby`` column if given. Rows are in
        candidate order; sort by ``score`` for a ranking.

        Examples
        --------
        >>> links = model.get_regulatory_links(tss="mm10_gencode_vM25_tss500bp.bed")
        >>> links.sort_values("score", ascending=False).head()
        >>> per_type = model.get_regulatory_links(method="correlation", groupby="cell_type")
        """
        methods = ("gradient", "attention", "correlation", "distance")
        if method not in methods:
            raise ValueError(f"method must be one of {list(methods)}, got {method!r}.")
        source, target = self._link_roles(source_modality, target_modality)
        if method in ("gradient", "attention"):
            check_diffusion_trained(self)
            if method == "gradient" and self.module.diffusion.condition_prob == 0:
                raise ValueError(
                    "method='gradient' differentiates the learned translation, which this model "
                    "lacks (condition_prob=0): use method='attention' or 'correlation', or "
                    "train with condition_prob > 0."
                )
        if n_cells < 1 or n_background < 2:
            raise ValueError(
                f"n_cells must be >= 1 and n_background >= 2, got {n_cells}, {n_background}."
            )
        needed = self.modalities if method == "attention" else (source, target)
        mdata = self._query_mudata(adata, needed if method != "distance" else ())
        pairs = self._link_candidates(mdata, source, target, candidates, tss, window)
        if method == "distance" and pairs["distance"].isna().all():
            raise ValueError("method='distance' needs genomic coordinates (see `tss`).")
        cells = np.arange(mdata.n_obs) if indices is None else np.asarray(indices)
        if groupby is None:
            groups = [(None, cells)]
        else:
            if groupby not in mdata.obs.columns:
                raise KeyError(f"groupby={groupby!r} is not a column of obs.")
            column = mdata.obs[groupby].to_numpy()[cells]
            groups = [(g, cells[column == g]) for g in pd.unique(column)]
        values = {}
        if method != "distance":
            values = {m: self._modality_values(mdata, m) for m in needed}
        rng = np.random.default_rng(seed)
        t_idx, s_idx = pairs["target_idx"].to_numpy(), pairs["source_idx"].to_numpy()
        frames = []
        for name, group in groups:
            if method in ("gradient", "attention") and len(group) > n_cells:
                group = np.sort(rng.choice(group, size=n_cells, replace=False))
            scores, raw = self._score_links(
                method, mdata, values, source, target, t_idx, s_idx, pairs, group,
                n_background, max_distance, seed, attention_kwargs or {},
            )  # fmt: skip
            frame = pairs.drop(columns=["target_idx", "source_idx"])
            frame.attrs = {}
            frame["score"], frame["raw_score"] = scores, raw
            frame["method"] = method
            if groupby is not None:
                frame[groupby] = name
            frames.append(frame)
        t_noun, s_noun = MODALITIES[target].feature_noun, MODALITIES[source].feature_noun
        columns = [t_noun, s_noun, "score", "raw_score", "distance", "method"]
        columns += [groupby] if groupby is not None else []
        return pd.concat(frames, ignore_index=True)[columns]

    def _score_links(
        self, method, mdata, values, source, target, t_idx, s_idx, pairs, cells,
        n_background, max_distance, seed, attention_kwargs,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Scores and raw scores (association before z-scoring, or NaN) of the pairs."""
        distance = pairs["distance"].to_numpy()
        if method == "distance":
            return distance_link_scores(distance), np.full(len(distance), np.nan)
        self.module.eval()
        if method == "attention":
            labels = self._registered_labels(mdata, cells)
            scores = attention_link_scores(
                self.module, {m: v[cells] for m, v in values.items()}, source, target, t_idx,
                s_idx, labels, seed, **attention_kwargs,
            )  # fmt: skip
            if max_distance is not None:
                scores = np.where(distance > max_distance, 0.0, scores)
            return scores, np.full(len(distance), np.nan)
        binary = {m: self.module.likelihoods[m].binary for m in (source, target)}
        source_values = correlation_values(values[source][cells], binary[source])
        if method == "correlation":
            target_values = correlation_values(values[target][cells], binary[target])
            rows = correlation_rows(target_values, source_values)
        else:
            rows = gradient_rows(
                self.module,
                values[source][cells],
                source,
                target,
                self.module.diffusion.make_sampler("mean").clip_x0,
            )
        stats, target_chrom = self._background_stats(source, target, pairs, source_values)
        raw, z = background_scores(rows, t_idx, s_idx, stats, target_chrom, n_background, seed)
        return z, raw

    def _background_stats(
        self, source: str, target: str, pairs: pd.DataFrame, source_values: sparse.csr_matrix
    ) -> tuple[pd.DataFrame, np.ndarray | None]:
        """Strata (and chromosomes) of the source features, chromosomes of the targets."""
        layout = pairs.attrs.get("layout", {})
        chrom = layout.get("chrom", {})
        width = layout.get("width") if source == "atac" else None
        stats = pd.DataFrame({"stratum": source_strata(source_values, width)})
        if source in chrom and target in chrom:
            stats["chrom"] = chrom[source]
            return stats, chrom[target]
        return stats, None

    def _registered_labels(self, mdata: MuData, cells: np.ndarray) -> np.ndarray | None:
        """Label codes of the cells (the reference conditions DCA on them), if available."""
        labels_key = self.registry_[_SETUP_ARGS_KEY].get("labels_key")
        if not self.module.diffusion.n_labels or labels_key not in mdata.obs.columns:
            return None
        obs = mdata.obs.iloc[cells]
        categories = label_categories(self.registry_, self.module.n_labels)
        return query_labels(labels_key, obs, categories, self.module.label_counts)

    # ------------------------------------------------------------------ perturbation

    def get_perturbation_effect(
        self,
        features: str | Sequence[str],
        source_modality: str = "rna",
        target_modality: str = "atac",
        perturbation: Perturbation = "knockout",
        value: float | None = None,
        adata: MuData | None = None,
        indices: Sequence[int] | None = None,
        n_samples: int = 1,
        sampler: Literal["mean", "dpm++2m", "ddim", "ddpm"] | None = None,
        n_steps: int | None = None,
        seed: int = 0,
        batch_size: int = 1024,
        return_type: Literal["dataframe", "anndata"] = "dataframe",
    ) -> pd.DataFrame | AnnData:
        """Predict how perturbing features of one modality changes another (in silico).

        The source values of the chosen cells are perturbed (``features`` knocked out,
        overexpressed or set), and both the perturbed and the unperturbed (control) cells are
        translated into the target with :meth:`get_translated_modality` (learned method) with
        the **same seed**, so both use the same noise and the difference is the effect of the
        perturbation alone (zero if nothing changes). Works in either direction, e.g.
        gene -> peaks (``"rna"`` -> ``"atac"``, the reference's knockout) and peak -> genes
        (``"atac"`` -> ``"rna"``). With ``n_samples > 1`` (and a stochastic sampler), each
        sample ``s`` uses the seed ``seed + s`` for both arms, and the effect's spread over
        the samples gives its uncertainty.

        Parameters
        ----------
        features
            Source features to perturb (names in the model).
        source_modality, target_modality
            Perturbed and read-out modality.
        perturbation
            ``"knockout"``: set to 0 (zero counts; a closed peak). ``"overexpress"``: counts
            multiplied by ``value`` (default 4; cells without counts stay at 0, use ``"set"``
            to force a level); for ATAC, open (1). ``"set"``: set to ``value`` in every cell.
        value
            Factor of ``"overexpress"`` or level of ``"set"``.
        adata
            MuData with the source modality (registered layer); ``None``: the registered data.
        indices
            Cells to perturb (default: all).
        n_samples
            Translations per arm. ``1`` with the deterministic ``sampler="mean"`` (default);
            more with a stochastic sampler (default ``"dpm++2m"``).
        sampler, n_steps
            Sampler of the learned translation and its steps (see
            :meth:`get_translated_modality`).
        seed
            Seed of the first sample.
        batch_size
            Cells per chunk.
        return_type
            ``"dataframe"``: one row per target feature. ``"anndata"``: the per-cell effect
            (mean over samples) as ``X`` (cells x target features), with the table as ``var``.

        Returns
        -------
        Per target feature: ``control`` and ``perturbed`` (mean translated value over cells
        and samples: expression per 10k counts, or accessibility probability), ``effect``
        (their difference), ``log2_fold_change``, ``sd`` (of the cell-averaged effect over
        samples; NaN for one sample), ``z`` (``effect`` over its standard error) and a 95%
        normal interval ``ci_low``/``ci_high``. Sorted as the model's target features.

        Examples
        --------
        >>> ko = model.get_perturbation_effect(["Cux2"], "rna", "atac", n_samples=10)
        >>> ko.sort_values("z").head()
        """
        source, target = self._link_roles(source_modality, target_modality)
        if perturbation not in ("knockout", "overexpress", "set"):
            raise ValueError(
                f"perturbation must be 'knockout', 'overexpress' or 'set', got {perturbation!r}."
            )
        if perturbation == "set" and value is None:
            raise ValueError("perturbation='set' needs the level: pass `value`.")
        if value is not None and value < 0:
            raise ValueError(f"value must be non-negative, got {value}.")
        if return_type not in ("dataframe", "anndata"):
            raise ValueError(f"return_type must be 'dataframe' or 'anndata', got {return_type!r}.")
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
        sampler = sampler or ("mean" if n_samples == 1 else "dpm++2m")
        binary = self.module.likelihoods[source].binary
        if perturbation == "set" and not binary and value != round(value):
            raise ValueError(
                f"{source} values are counts: `value` must be an integer, got {value}."
            )
        columns = np.unique(self._feature_index(source, features, "features"))
        mdata = self._query_mudata(adata, (source,))
        x = self._modality_values(mdata, source)
        obs = mdata.obs
        if indices is not None:
            x, obs = x[np.asarray(indices)], obs.iloc[np.asarray(indices)]
        var = pd.DataFrame(index=pd.Index(self.feature_names_[source], dtype=str))
        control = AnnData(X=x, obs=pd.DataFrame(index=obs.index.astype(str)), var=var)
        perturbed = control.copy()
        perturbed.X = _perturbed(x, columns, perturbation, value, binary)
        arms = {"control": control, "perturbed": perturbed}
        means = dict.fromkeys(arms, 0.0)
        per_sample, per_cell = [], 0.0
        for s in range(n_samples):
            out = {
                name: self.get_translated_modality(
                    query,
                    source,
                    target,
                    sampler=sampler,
                    n_steps=n_steps,
                    seed=seed + s,
                    batch_size=batch_size,
                    expected="counts",  # effects are differences of means over cells
                    return_type="numpy",
                )  # fmt: skip
                for name, query in arms.items()
            }
            delta = out["perturbed"].astype(np.float64) - out["control"]
            per_sample.append(delta.mean(axis=0))
            for name in arms:
                means[name] = means[name] + out[name].astype(np.float64).mean(axis=0) / n_samples
            if return_type == "anndata":
                per_cell = per_cell + delta / n_samples
        effects = np.stack(per_sample)
        effect = effects.mean(axis=0)
        sd = effects.std(axis=0, ddof=1) if n_samples > 1 else np.full_like(effect, np.nan)
        se = sd / np.sqrt(n_samples)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(effect == 0, 0.0, effect / se)
        table = pd.DataFrame(
            {
                "feature": self.feature_names_[target],
                "control": means["control"],
                "perturbed": means["perturbed"],
                "effect": effect,
                "log2_fold_change": np.log2(means["perturbed"] / means["control"]),
                "sd": sd,
                "z": z,
                "ci_low": effect - 1.96 * se,
                "ci_high": effect + 1.96 * se,
            }
        )
        if return_type == "dataframe":
            return table
        info = {
            "features": list(np.atleast_1d(features)),
            "source_modality": source,
            "target_modality": target,
            "perturbation": perturbation,
            "value": value,
            "n_samples": n_samples,
            "sampler": sampler,
            "seed": seed,
        }
        return AnnData(
            X=np.asarray(per_cell, dtype=np.float32),
            obs=obs.loc[:, ~obs.columns.str.startswith("_scvi_")].copy(),
            var=table.set_index("feature"),
            uns={"scdx_perturbation": info},
        )


def _perturbed(
    x: sparse.csr_matrix,
    columns: np.ndarray,
    perturbation: str,
    value: float | None,
    binary: bool,
) -> sparse.csr_matrix:
    """``x`` with ``columns`` knocked out, overexpressed or set."""
    n_cells, n_features = x.shape
    block = x[:, columns].toarray().astype(np.float64)
    if perturbation == "knockout":
        block[:] = 0.0
    elif perturbation == "set":
        block[:] = value
    elif binary:
        block[:] = 1.0
    else:
        block *= OVEREXPRESSION_FACTOR if value is None else value
    if not binary:
        block = np.round(block)  # counts stay integers
    keep = np.ones(n_features)
    keep[columns] = 0.0
    scatter = sparse.csr_matrix(
        (np.ones(len(columns)), (np.arange(len(columns)), columns)),
        shape=(len(columns), n_features),
    )
    out = x @ sparse.diags(keep) + sparse.csr_matrix(block) @ scatter
    out = sparse.csr_matrix(out, dtype=np.float32)
    out.eliminate_zeros()
    return out
