"""Task-level evaluation: one definition of the split, the reference sample and the score sets.

``scdx demo``, the benchmark scripts and the tutorials all score through these functions, so
that their numbers agree by construction:

* :func:`held_out_mask` is the canonical split (a fifth of the cells at random);
* :func:`label_composition` and :func:`reference_sample` draw real training cells with the
  cell-type composition of the held-out cells: scored like generated cells, they give the floor
  that a perfect generator would reach on the data (real vs real);
* :func:`translation_controls` fits the three controls of a translation direction (mean profile,
  kNN regression, ridge regression) on the training cells;
* :func:`latent_floor` fits the same kNN and ridge regressions on a model's own source latent:
  the floor that the model's translation must reach to use what its source latent carries;
* :func:`translation_score_set` scores every prediction of one direction against the measured
  target, with the chance levels (:func:`chance_levels`, defined here only) and, given the
  training cells' target, FOSCTTM and cell-type recovery in a target embedding;
* :func:`generation_score_set` scores sets of cells (generated ones and the real reference)
  against the held-out cells with :func:`~scdx_scvi.metrics.generation_scores`, the protocol that
  treats both sets alike.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ._controls import (
    knn_on_embedding,
    knn_prediction,
    mean_profile_prediction,
    ridge_on_embedding,
    ridge_prediction,
)
from ._diagnostics import profile_diagnostics
from ._embedding import Embedding, binarised, check_modality, joint_embedding
from ._generation import generation_scores, mmd_rbf, per_group
from ._reconstruction import log_cp10k
from ._translation import (
    _as_matrix,
    auprc_per_feature,
    auroc_auprc_flat,
    auroc_per_feature,
    foscttm,
    knn_label_transfer_accuracy,
    pearson_overall,
    pearson_per_cell,
    pearson_per_feature,
    rmse,
    spearman_per_cell,
    spearman_per_feature,
)

#: Share of cells held out by :func:`held_out_mask`.
TEST_SHARE = 0.2
#: Names of the translation controls, in table order.
KNN_NAME, RIDGE_NAME, MEAN_NAME = "kNN regression", "ridge regression", "mean profile"
CONTROL_NAMES = (KNN_NAME, RIDGE_NAME, MEAN_NAME)
#: Names of the floors of :func:`latent_floor`.
LATENT_KNN_NAME, LATENT_RIDGE_NAME = "kNN on own source latent", "ridge on own source latent"
FLOOR_NAMES = (LATENT_KNN_NAME, LATENT_RIDGE_NAME)
#: Name of the real reference sample in a generation score set: the real-vs-real floor.
REFERENCE_NAME = "real training cells"
#: Neighbours of the kNN-regression control.
KNN_NEIGHBOURS = 15
#: Seeds of :func:`generation_score_set`: one subsample, embedding and fold assignment each. The
#: held-out set is small (a fifth of the cells), so the classifier AUC varies by about 0.03 from
#: seed to seed on 200 cells; ten seeds keep the mean's spread near 0.01.
GENERATION_SEEDS = tuple(range(10))
#: Headline translation metric of each target modality kind (the first column of the tables).
HEADLINE = {
    "rna": "pearson_per_feature",
    "protein": "pearson_per_feature",
    "atac": "auroc_per_peak",
}


def held_out_mask(n_obs: int, seed: int = 0, test_share: float = TEST_SHARE) -> np.ndarray:
    """Return the canonical held-out split: ``default_rng(seed).random(n_obs) < test_share``.

    Parameters
    ----------
    n_obs
        Number of cells.
    seed
        Seed of the split (the benchmarks use 0).
    test_share
        Expected share of held-out cells.

    Returns
    -------
    Boolean array, ``True`` for held-out cells.
    """
    if n_obs < 0:
        raise ValueError(f"`n_obs` must be non-negative, got {n_obs}.")
    if not 0 < test_share < 1:
        raise ValueError(f"`test_share` must be between 0 and 1, got {test_share}.")
    return np.random.default_rng(seed).random(n_obs) < test_share


def translation_directions(modalities: Iterable[str]) -> list[tuple[str, str]]:
    """List the ``(source, target)`` pairs to score: each other modality to RNA and back.

    Parameters
    ----------
    modalities
        Modality kinds of the data (``"rna"``, ``"atac"``, ``"protein"``).

    Returns
    -------
    E.g. ``[("atac", "rna"), ("rna", "atac")]``.
    """
    present = set(modalities)
    others = [m for m in ("atac", "protein") if m in present]
    return [pair for m in others for pair in ((m, "rna"), ("rna", m))]


def label_composition(
    labels: Sequence[Any], n: int | None = None, known: Iterable[Any] | None = None
) -> dict[str, int]:
    """Cells per label of ``labels``, optionally restricted to ``known`` and scaled to ``n``.

    Parameters
    ----------
    labels
        Label of each cell (e.g. the held-out cells' types).
    n
        Total to scale to, by largest-remainder rounding; ``None``: the counts themselves.
    known
        Labels that may be asked for (e.g. those of the training cells); others are dropped.

    Returns
    -------
    ``{label: cells}`` (labels as strings, sorted, no zero counts).
    """
    counts = pd.Series(np.asarray(labels).astype(str)).value_counts()
    if known is not None:
        counts = counts[counts.index.isin([str(k) for k in known])]
    counts = counts.sort_index()
    if n is not None and counts.sum() > 0:
        share = counts.to_numpy() / counts.sum() * n
        scaled = np.floor(share).astype(int)
        order = np.argsort(-(share - scaled), kind="stable")
        scaled[order[: n - scaled.sum()]] += 1
        counts = pd.Series(scaled, index=counts.index)
    return {str(label): int(k) for label, k in counts.items() if k > 0}


def reference_sample(
    n_obs: int,
    composition: Mapping[str, int] | int,
    labels: Sequence[Any] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Draw real cells with a given composition: the reference for generated cells.

    Parameters
    ----------
    n_obs
        Number of cells to draw from (e.g. the training cells).
    composition
        ``{label: cells}`` (needs ``labels``), or a number of cells drawn uniformly.
    labels
        Label of each of the ``n_obs`` cells.
    seed
        Seed of the draw.

    Returns
    -------
    Sorted positions, drawn without replacement wherever a label has enough cells.
    """
    rng = np.random.default_rng(seed)
    if not isinstance(composition, Mapping):
        n = int(composition)
        return np.sort(rng.choice(n_obs, size=n, replace=n > n_obs))
    if labels is None:
        raise ValueError("A composition by label needs `labels`.")
    labels = np.asarray(labels).astype(str)
    if labels.shape[0] != n_obs:
        raise ValueError(f"`labels` has {labels.shape[0]} entries for {n_obs} cells.")
    picked = [np.zeros(0, dtype=int)]
    for label, count in composition.items():
        pool = np.flatnonzero(labels == str(label))
        if pool.size == 0:
            raise ValueError(f"No cell has the label {label!r} asked for in `composition`.")
        picked.append(rng.choice(pool, size=count, replace=count > pool.size))
    return np.sort(np.concatenate(picked))


def translation_controls(
    train_source: Any, train_target: Any, query_source: Any, source: str, target: str
) -> dict[str, np.ndarray]:
    """Predict the query cells' target with the three controls, fitted on training cells.

    Parameters
    ----------
    train_source, train_target
        Training cells' raw source and target matrices (same cells).
    query_source
        Query cells' raw source matrix.
    source, target
        Modality kinds of the direction.

    Returns
    -------
    ``{name: query cells x target features}`` for :func:`~scdx_scvi.metrics.knn_prediction`
    (``k = 15``), :func:`~scdx_scvi.metrics.ridge_prediction` and
    :func:`~scdx_scvi.metrics.mean_profile_prediction`.
    """
    train_source, train_target = _as_matrix(train_source), _as_matrix(train_target)
    query_source = _as_matrix(query_source)
    args = (train_source, train_target, query_source, source, target)
    return {
        KNN_NAME: knn_prediction(*args, k=KNN_NEIGHBOURS),
        RIDGE_NAME: ridge_prediction(*args),
        MEAN_NAME: mean_profile_prediction(train_target, query_source.shape[0], target),
    }


def latent_floor(
    train_latent: Any, train_target: Any, query_latent: Any, target: str
) -> dict[str, np.ndarray]:
    """Predict the query cells' target by kNN and ridge regression on a model's source latent.

    A translation computed from a source latent can use at least what these regressions find
    in it; one that stays below them does not use its source. The regressions are those of
    :func:`translation_controls` (``k = 15``; ridge with ``alpha = 1`` on the centred latent),
    fitted on the training cells, on the same prediction scale.

    Parameters
    ----------
    train_latent, query_latent
        Training and query cells' source latents (cells x latent dimensions), e.g. from
        :meth:`~scdx_scvi.model.SCDX.get_latent_representation`.
    train_target
        Training cells' raw target matrix (same cells as ``train_latent``).
    target
        Modality kind of the target.

    Returns
    -------
    ``{name: query cells x target features}`` for the kNN and the ridge floor.
    """
    check_modality(target, "target")
    train_latent, query_latent = np.asarray(train_latent), np.asarray(query_latent)
    if train_latent.shape[0] != train_target.shape[0]:
        raise ValueError(
            f"train_latent has {train_latent.shape[0]} cells but train_target has "
            f"{train_target.shape[0]}."
        )
    if query_latent.shape[1] != train_latent.shape[1]:
        raise ValueError(
            f"query_latent has {query_latent.shape[1]} dimensions, train_latent "
            f"{train_latent.shape[1]}."
        )
    train_target = _as_matrix(train_target)
    k = min(KNN_NEIGHBOURS, train_latent.shape[0])
    return {
        LATENT_KNN_NAME: knn_on_embedding(train_latent, train_target, query_latent, target, k),
        LATENT_RIDGE_NAME: ridge_on_embedding(train_latent, train_target, query_latent, target),
    }


def chance_levels(observed: Any, target: str) -> dict[str, float]:
    """Return what a prediction that knows nothing of the cells scores, per translation metric.

    A prediction that is the same for every cell has per-feature correlations 0 and per-peak
    AUROC 0.5, and its per-peak AUPRC is the share of positives: the mean share of open cells
    over the peaks that are scored (open in some but not all cells). For the flattened metrics,
    a random score has AUROC 0.5 and AUPRC the share of open entries (a constant per-peak
    profile scores above that: it knows which peaks are often open).

    Parameters
    ----------
    observed
        Measured target, raw (cells x features).
    target
        Modality kind of the target.

    Returns
    -------
    ``{metric: chance level}``.
    """
    check_modality(target, "target")
    if target != "atac":
        return {"pearson_per_feature": 0.0, "spearman_per_feature": 0.0}
    is_open = binarised(_as_matrix(observed))
    prevalence = np.asarray(is_open.mean(axis=0)).ravel()
    scored = (prevalence > 0) & (prevalence < 1)
    return {
        "auroc_per_peak": 0.5,
        "auprc_per_peak": float(prevalence[scored].mean()) if scored.any() else float("nan"),
        "auroc_flat": 0.5,
        "auprc_flat": float(is_open.nnz / max(np.prod(is_open.shape), 1)),
    }


def translation_scores(observed: Any, predicted: Any, target: str) -> tuple[dict, np.ndarray]:
    """Paired metrics of one translation, and its per-feature headline values.

    Parameters
    ----------
    observed
        Measured target of the query cells, raw counts (cells x features).
    predicted
        Prediction of the same cells: values per 10k counts (RNA, protein) or accessibility
        probabilities (ATAC).
    target
        Modality kind of the target.

    Returns
    -------
    ``(scores, per_feature)``. RNA and protein, on ``log1p`` counts per 10k: Pearson and
    Spearman per feature and per cell, Pearson overall, RMSE. ATAC: AUROC and AUPRC per peak
    (mean over the peaks with both classes) and flattened. ``per_feature`` holds the Pearson per
    feature, or the AUROC per peak (NaN for peaks with one class).
    """
    check_modality(target, "target")
    observed, predicted = _as_matrix(observed), _as_matrix(predicted)
    if target == "atac":
        per_feature = auroc_per_feature(observed, predicted)
        flat = auroc_auprc_flat(observed, predicted)
        return {
            "auroc_per_peak": float(np.nanmean(per_feature)),
            "auprc_per_peak": float(np.nanmean(auprc_per_feature(observed, predicted))),
            "auroc_flat": flat["auroc"],
            "auprc_flat": flat["auprc"],
        }, per_feature
    truth = log_cp10k(observed)
    pred = np.log1p(predicted.toarray() if sparse.issparse(predicted) else predicted)
    per_feature = pearson_per_feature(truth, pred)
    return {
        "pearson_per_feature": float(per_feature.mean()),
        "pearson_per_cell": float(pearson_per_cell(truth, pred).mean()),
        "pearson_overall": pearson_overall(truth, pred),
        "spearman_per_feature": float(spearman_per_feature(truth, pred).mean()),
        "spearman_per_cell": float(spearman_per_cell(truth, pred).mean()),
        "rmse": rmse(truth, pred),
    }, per_feature


def translation_score_set(
    observed: Any,
    predictions: Mapping[str, Any],
    target: str,
    train_target: Any | None = None,
    train_labels: Sequence[Any] | None = None,
    query_labels: Sequence[Any] | None = None,
    n_comps: int = 50,
) -> dict[str, Any]:
    """Score every prediction of one translation direction against the measured target.

    Parameters
    ----------
    observed
        Measured target of the query cells, raw counts.
    predictions
        ``{method: prediction}`` (e.g. a model and :func:`translation_controls`).
    target
        Modality kind of the target.
    train_target
        The training cells' raw target. If given, an :class:`~scdx_scvi.metrics.Embedding` of
        the target is fitted on it, and every prediction also gets its FOSCTTM against the
        measured cells in that space (``None`` for a constant prediction, whose distances all
        tie) and, with ``train_labels`` and ``query_labels``, the accuracy of a kNN classifier
        trained on the training cells at recovering the query cells' labels
        (``label_accuracy``; the measured cells' own accuracy is ``label_accuracy_measured``).
    train_labels, query_labels
        Labels of the training and the query cells.
    n_comps
        Components of the target embedding.

    Returns
    -------
    ``scores`` (``{method: metrics}``), ``per_feature`` (``{method: values}``), ``chance``
    (:func:`chance_levels`) and, for ATAC, ``peaks_scored``.
    """
    observed = _as_matrix(observed)
    out: dict[str, Any] = {
        "scores": {},
        "per_feature": {},
        "chance": chance_levels(observed, target),
    }
    space, with_labels = None, False
    if train_target is not None:
        space = Embedding(target, n_comps=n_comps).fit(_as_matrix(train_target))
        train_emb, observed_emb = space.transform(train_target), space.transform(observed)
        with_labels = train_labels is not None and query_labels is not None
        if with_labels:
            measured = knn_label_transfer_accuracy(
                train_emb, train_labels, observed_emb, query_labels
            )
            out["label_accuracy_measured"] = measured["accuracy"]
    for name, predicted in predictions.items():
        scores, out["per_feature"][name] = translation_scores(observed, predicted, target)
        if space is not None:
            # Probabilities and values per 10k are embedded as if they were measured profiles.
            predicted = _as_matrix(predicted)
            predicted_emb = space.transform(predicted)
            rows = predicted.toarray() if sparse.issparse(predicted) else np.asarray(predicted)
            constant = not (rows != rows[:1]).any()
            scores["foscttm"] = None if constant else foscttm(predicted_emb, observed_emb)
            if with_labels:
                transfer = knn_label_transfer_accuracy(
                    train_emb, train_labels, predicted_emb, query_labels
                )
                scores["label_accuracy"] = transfer["accuracy"]
        out["scores"][name] = scores
    if target == "atac":
        out["peaks_scored"] = int(np.isfinite(next(iter(out["per_feature"].values()))).sum())
    return out


def generation_score_set(
    held_out: Any,
    sets: Mapping[str, Any],
    modality: str,
    held_out_labels: Sequence[Any] | None = None,
    set_labels: Mapping[str, Sequence[Any] | None] | None = None,
    n_comps: int = 50,
    seeds: Sequence[int] = GENERATION_SEEDS,
    max_cells: int | None = None,
    n_jobs: int | None = None,
    paired: Collection[str] = (),
) -> dict[str, dict[str, float]]:
    """Score sets of cells of one modality against the held-out real cells.

    Every set is compared with the held-out cells by
    :func:`~scdx_scvi.metrics.generation_scores` (equal sizes, one embedding fitted on both,
    cross-validated classifier, mean over ``seeds``). Include the real reference sample
    (:func:`reference_sample`, named :data:`REFERENCE_NAME`) among the sets: its scores are the
    real-vs-real floor of the data, what a perfect generator would reach.

    With labels, each set also gets, in the embedding fitted on it and the held-out cells
    (seed ``seeds[0]``, all cells): ``label_accuracy``, the accuracy of a kNN classifier trained
    on the held-out cells at recovering the set's labels, and ``mmd_rbf_per_type_median``, the
    median over labels with at least 20 cells in both sets of the MMD within the label.

    Each set also gets ``diagnostics``: its count profile against the held-out cells'
    (:func:`~scdx_scvi.metrics.profile_diagnostics`: library size, detected features, per-feature
    means, variances and zero fractions, per cell type with labels), with the held-out cells'
    own summary under ``diagnostics["real"]`` of every set.

    Parameters
    ----------
    held_out
        Held-out real cells, raw counts (cells x features).
    sets
        ``{name: cells x features raw counts}`` to score.
    modality
        ``"rna"``, ``"protein"`` or ``"atac"``.
    held_out_labels
        Labels of the held-out cells.
    set_labels
        ``{name: labels}`` of the sets (a missing name or ``None``: no label metrics).
    n_comps, seeds, max_cells, n_jobs
        Passed to :func:`~scdx_scvi.metrics.generation_scores`.
    paired
        Names of the sets drawn cell by cell from the held-out cells (reconstruction draws,
        a peer's posterior samples): their classifier keeps each cell and its draw in one fold.

    Returns
    -------
    ``{name: metrics}``.
    """
    held_out = _as_matrix(held_out)
    out = {}
    for name, cells in sets.items():
        cells = _as_matrix(cells)
        scores: dict[str, Any] = generation_scores(
            held_out, cells, modality, n_comps=n_comps, seeds=seeds, max_cells=max_cells,
            n_jobs=n_jobs, paired=name in paired,
        )  # fmt: skip
        labels = (set_labels or {}).get(name)
        if held_out_labels is not None and labels is not None:
            real_emb, emb = joint_embedding(held_out, cells, modality, n_comps, seeds[0])
            transfer = knn_label_transfer_accuracy(real_emb, held_out_labels, emb, labels)
            by_type = per_group(mmd_rbf, real_emb, emb, held_out_labels, labels)
            scores["label_accuracy"] = transfer["accuracy"]
            scores["mmd_rbf_per_type_median"] = float(by_type["mmd_rbf"].median())
            scores["types_scored"] = int(by_type["scored"].sum())
        out[name] = scores
    diagnostics = profile_diagnostics(held_out, sets, modality, held_out_labels, set_labels)
    for name, scores in out.items():
        scores["diagnostics"] = {**diagnostics[name], "real": diagnostics["real"]}
    return out
