"""The end-to-end demo behind ``scdx demo``: train, generate, translate, score and report.

:func:`run_demo` loads paired data (the built-in simulator by default, or a ``.h5mu`` file),
holds out a fifth of the cells, trains :class:`~scdx_scvi.SCDX` (autoencoder, then latent
diffusion) on the others, generates new cells of the held-out cell types, translates the
held-out cells from one modality into the other in both directions, scores both against the
measured held-out cells and against two simple controls fitted on the same training cells, and
writes everything (model, cells, figures, ``metrics.json`` and a readable ``report.md``) to one
output folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData

    from scdx_scvi import SCDX

#: Share of cells held out for scoring; the split is ``default_rng(seed).random(n) < TEST_SHARE``.
TEST_SHARE = 0.2
#: Differences of scores below this count as ties when the report puts the tables in words.
TIE = 0.01
#: Neighbours of the kNN-regression control.
KNN_NEIGHBOURS = 15
#: Column of ``obs`` used as the cell type when ``labels_key`` is not given.
DEFAULT_LABELS_KEY = "cell_type"
#: Names of the methods in tables, files and ``metrics.json``.
SCDX_NAME, KNN_NAME, MEAN_NAME, REFERENCE_NAME = (
    "SCDX",
    "kNN regression",
    "mean profile",
    "training cells",
)
_DISPLAY = {"rna": "RNA", "atac": "ATAC", "protein": "protein"}

#: Translation metrics per target modality: key, label, better, one-sentence meaning.
TRANSLATION_METRICS: dict[str, list[tuple[str, str, str, str]]] = {
    "rna": [
        (
            "pearson_per_gene",
            "Pearson per gene",
            "higher",
            "For each gene, the correlation across held-out cells between the predicted and the "
            "measured log1p(counts per 10k), averaged over genes: higher means the prediction "
            "ranks cells correctly by each gene's expression (a constant prediction scores 0).",
        ),
        (
            "pearson_per_cell",
            "Pearson per cell",
            "higher",
            "For each cell, the correlation across genes between its predicted and measured "
            "log1p(counts per 10k), averaged over cells: higher means each cell's expression "
            "profile is closer to the measured one; the typical profile alone already scores "
            "well here, so compare with the mean-profile control.",
        ),
    ],
    "protein": [
        (
            "pearson_per_protein",
            "Pearson per protein",
            "higher",
            "For each protein, the correlation across held-out cells between the predicted and "
            "the measured log1p(counts per 10k), averaged over proteins: higher is better "
            "(a constant prediction scores 0).",
        ),
        (
            "pearson_per_cell",
            "Pearson per cell",
            "higher",
            "For each cell, the correlation across proteins between its predicted and measured "
            "log1p(counts per 10k), averaged over cells: higher is better; compare with the "
            "mean-profile control, which already scores well.",
        ),
    ],
    "atac": [
        (
            "auroc_per_peak",
            "AUROC per peak",
            "higher",
            "For each peak, how well the predicted accessibility separates the held-out cells "
            "where the peak was measured open from those where it was not (area under the ROC "
            "curve), averaged over peaks: 1 is perfect, 0.5 is chance.",
        ),
        (
            "auprc_per_peak",
            "AUPRC per peak",
            "higher",
            "For each peak, the average precision of the predicted accessibility at finding the "
            "cells where the peak was measured open, averaged over peaks: higher is better, and "
            "chance level is the share of open cells (given under the table).",
        ),
    ],
}

#: Generation metrics: key of :func:`~scdx_scvi.metrics.generation_scores`, label, better, meaning.
GENERATION_METRICS: list[tuple[str, str, str, str]] = [
    (
        "mmd_rbf",
        "MMD (RBF kernel)",
        "lower",
        "Maximum mean discrepancy between the generated and the held-out real cells in the PCA "
        "described above: lower means the two clouds of cells are closer (0 for identical "
        "distributions).",
    ),
    (
        "energy_distance",
        "energy distance",
        "lower",
        "Energy distance between the generated and the held-out real cells in the same PCA: "
        "lower means the two distributions are closer (0 for identical samples).",
    ),
    (
        "classifier_auc",
        "real-vs-generated AUC",
        "near 0.5",
        "ROC-AUC of a random forest trained to tell generated from real cells: 0.5 means it "
        "cannot tell them apart (ideal), 1 means every generated cell is recognisable.",
    ),
    (
        "mixing",
        "kNN mixing",
        "higher",
        "How well generated and real cells intermingle among each other's 15 nearest "
        "neighbours, from 0 (separate clouds) to 1 (as mixed as two real samples): higher is "
        "better.",
    ),
]


class DemoInputError(ValueError):
    """A problem with the demo's input data, reported in one line."""


@dataclass
class DemoConfig:
    """Settings of :func:`run_demo`.

    Parameters
    ----------
    data
        A paired ``.h5mu`` (raw counts; RNA and ATAC and/or protein). ``None``: cells simulated
        with :func:`scdx_scvi.datasets.simulate_multiome`.
    labels_key
        Column of ``obs`` with the cell types (generation is conditioned on it). ``None``:
        ``"cell_type"`` if the data has it, else no labels.
    out
        Output folder (created; files already there with the demo's names are replaced).
    accelerator
        ``"auto"`` (a GPU if there is one), ``"cpu"`` or ``"gpu"``.
    seed
        Seed of the simulation, the split, the training, generation and translation.
    n_cells, n_genes, n_peaks, n_proteins, n_cell_types
        Size of the simulated data (ignored with ``data``).
    architecture
        Autoencoder size preset of :class:`~scdx_scvi.SCDX`.
    n_channels
        Base width of the diffusion U-Net.
    max_epochs
        Maximum autoencoder epochs (early stopping on the validation loss).
    diffusion_steps
        Maximum diffusion optimiser steps (early stopping on the validation loss).
    n_generate
        Cells to generate; ``None``: as many as the held-out cells, of the same cell types.
    progress
        Show progress bars while training, generating and translating.
    figures
        Draw the figures (UMAPs and the per-gene scatter).
    """

    data: Path | None = None
    labels_key: str | None = None
    out: Path = Path("demo_output")
    accelerator: str = "auto"
    seed: int = 0
    n_cells: int = 2000
    n_genes: int = 1000
    n_peaks: int = 3000
    n_proteins: int = 0
    n_cell_types: int = 6
    architecture: str = "small"
    n_channels: int = 32
    max_epochs: int = 30
    diffusion_steps: int = 1500
    n_generate: int | None = None
    progress: bool = True
    figures: bool = True


@dataclass
class DemoData:
    """Paired cells to run the demo on."""

    mdata: MuData
    description: str
    modalities: dict[str, str]
    labels_key: str | None
    simulated: bool


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: scores, timings and the files written."""

    out: Path
    metrics: dict[str, Any]
    files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------- data


def _say(message: str) -> None:
    print(message, flush=True)


def read_paired_file(path: Path) -> MuData:
    """Read a ``.h5mu`` file, turning a missing or unreadable file into :class:`DemoInputError`.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    The MuData.
    """
    import mudata as md

    if not path.exists():
        raise DemoInputError(f"no such file: {path}")
    if path.is_dir():
        raise DemoInputError(f"{path} is a directory, not a .h5mu file")
    try:
        return md.read_h5mu(path)
    except Exception as error:  # h5py, anndata and mudata raise many kinds
        text = " ".join(str(error).split()) or type(error).__name__
        raise DemoInputError(f"cannot read {path} as a .h5mu file: {text}") from error


def find_modalities(mdata: MuData, name: str) -> dict[str, str]:
    """Tell which modalities of ``mdata`` are RNA, ATAC and protein.

    Parameters
    ----------
    mdata
        The paired data.
    name
        Name of the data, for messages.

    Returns
    -------
    ``{kind: modality name}``, with ``"rna"`` and at least one of ``"atac"``, ``"protein"``.
    """
    from scdx_scvi.data import data_modalities, resolve_modalities

    found = list(mdata.mod.keys())
    needed = f"{name} needs an RNA modality and an ATAC (or protein) modality; it has {found}"
    try:
        modalities = data_modalities(resolve_modalities(mdata, None, {}))
    except ValueError as error:
        raise DemoInputError(needed) from error
    if "rna" not in modalities or len(modalities) < 2:
        raise DemoInputError(needed)
    return dict(modalities)


def resolve_labels_key(obs: pd.DataFrame, requested: str | None, name: str) -> str | None:
    """Check the cell-type column: the requested one must exist; by default ``cell_type``.

    Parameters
    ----------
    obs
        The data's cell annotations.
    requested
        The column asked for, or ``None``.
    name
        Name of the data, for messages.

    Returns
    -------
    The column to use, or ``None`` for none.
    """
    if requested is None:
        return DEFAULT_LABELS_KEY if DEFAULT_LABELS_KEY in obs.columns else None
    if requested not in obs.columns:
        columns = ", ".join(map(str, obs.columns)) or "none"
        raise DemoInputError(
            f"{name} has no obs column {requested!r} for --labels-key; its columns: {columns}"
        )
    return requested


def load_data(config: DemoConfig) -> DemoData:
    """Load the demo's data: the simulator by default, else the ``config.data`` file.

    Parameters
    ----------
    config
        Demo settings.

    Returns
    -------
    The data, a one-line description, its modalities and its cell-type column.
    """
    from scdx_scvi.datasets import simulate_multiome

    if config.data is None:
        mdata, links = simulate_multiome(
            n_cells=config.n_cells,
            n_genes=config.n_genes,
            n_peaks=config.n_peaks,
            n_proteins=config.n_proteins,
            n_cell_types=config.n_cell_types,
            seed=config.seed,
        )
        description = (
            f"simulated with scdx_scvi.datasets.simulate_multiome (seed {config.seed}): "
            f"{config.n_cell_types} cell types, {len(links)} planted gene-peak links, 2 batches "
            "with different sequencing depths"
        )
        name, simulated = "the simulated data", True
    else:
        path = Path(config.data)
        mdata = read_paired_file(path)
        description, name, simulated = f"{path.name} ({path})", path.name, False
    modalities = find_modalities(mdata, name)
    labels_key = resolve_labels_key(mdata.obs, config.labels_key, name)
    return DemoData(mdata, description, modalities, labels_key, simulated)


def split_cells(n_obs: int, seed: int) -> np.ndarray:
    """Return the held-out mask: ``default_rng(seed).random(n_obs) < TEST_SHARE``.

    Parameters
    ----------
    n_obs
        Number of cells.
    seed
        Seed of the split.

    Returns
    -------
    Boolean array, ``True`` for held-out cells.
    """
    return np.random.default_rng(seed).random(n_obs) < TEST_SHARE


def translation_directions(modalities: dict[str, str]) -> list[tuple[str, str]]:
    """Return the ``(source, target)`` pairs to translate: each other modality to RNA and back.

    Parameters
    ----------
    modalities
        ``{kind: modality name}`` of the data.

    Returns
    -------
    E.g. ``[("atac", "rna"), ("rna", "atac")]``.
    """
    others = [m for m in ("atac", "protein") if m in modalities]
    return [pair for m in others for pair in ((m, "rna"), ("rna", m))]


def _direction_name(source: str, target: str) -> str:
    return f"{_DISPLAY[source]}->{_DISPLAY[target]}"


# ------------------------------------------------------------------------------ training


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Hide the libraries' start-up messages and warnings that do not concern the user."""
    names = (
        "",  # the root logger, which mudata logs its option changes to
        "lightning.pytorch",
        "lightning.fabric",
        "scvi.data._download",
        "scdx_scvi.data",
        "mudata",
        "anndata",
    )
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*treespec.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def train_model(train: MuData, data: DemoData, config: DemoConfig) -> SCDX:
    """Register the training cells and train SCDX: the autoencoder, then the diffusion.

    Only sizes (architecture, U-Net width), epochs and steps are demo choices; every other
    option is the package default.

    Parameters
    ----------
    train
        Training cells (registered in place; pass a copy of the user's data).
    data
        The loaded data (modalities and cell-type column).
    config
        Demo settings.

    Returns
    -------
    The trained model.
    """
    import scvi

    from scdx_scvi import SCDX

    scvi.settings.seed = config.seed
    SCDX.setup_mudata(
        train,
        labels_key=data.labels_key,
        modalities={f"{m}_layer": mod for m, mod in data.modalities.items()},
    )
    model = SCDX(train, architecture=config.architecture, n_channels=config.n_channels)
    model.train(
        max_epochs=config.max_epochs,
        max_steps_diffusion=config.diffusion_steps,
        accelerator=config.accelerator,
        enable_progress_bar=config.progress,
    )
    return model


def training_summary(model: SCDX, config: DemoConfig) -> dict[str, Any]:
    """Epochs and steps the two training stages ran, with their final validation losses.

    Parameters
    ----------
    model
        The trained model.
    config
        Demo settings (the maxima).

    Returns
    -------
    A dict for ``metrics.json`` and the report.
    """

    def last(history: dict | None, key: str) -> float | None:
        if not history or key not in history or len(history[key]) == 0:
            return None
        return float(history[key].iloc[-1, 0])

    history, diffusion = model.history, model.diffusion_history or {}
    epochs = len(history["train_loss"]) if history and "train_loss" in history else 0
    diffusion_epochs = len(diffusion.get("diffusion_loss_train", ()))
    return {
        "autoencoder_epochs": epochs,
        "autoencoder_max_epochs": config.max_epochs,
        "autoencoder_validation_loss": last(history, "validation_loss"),
        "diffusion_steps": int(model.trainer.global_step) if model.trainer else None,
        "diffusion_max_steps": config.diffusion_steps,
        "diffusion_epochs": diffusion_epochs,
        "diffusion_validation_loss": last(diffusion, "diffusion_loss_validation"),
        "device": str(model.device),
    }


# --------------------------------------------------------------------- generation


def generation_request(
    held_out_labels: pd.Series | None, known: list[str], n_generate: int | None
) -> dict[str, int] | int:
    """Cells to generate per cell type: the held-out composition, scaled to ``n_generate``.

    Parameters
    ----------
    held_out_labels
        Cell type of each held-out cell, or ``None`` without labels.
    known
        Cell types the model was trained on (others cannot be generated).
    n_generate
        Total number of cells; ``None``: as many as the held-out cells of known types.

    Returns
    -------
    ``{cell type: n}`` (largest-remainder rounding), or a number of cells without labels.
    """
    if held_out_labels is None:
        return int(n_generate) if n_generate is not None else 0
    counts = held_out_labels.astype(str).value_counts()
    counts = counts[counts.index.isin([str(k) for k in known])].sort_index()
    if n_generate is None or counts.sum() == 0:
        return {label: int(n) for label, n in counts.items() if n > 0}
    share = counts.to_numpy() / counts.sum() * n_generate
    n = np.floor(share).astype(int)
    order = np.argsort(-(share - n), kind="stable")
    n[order[: n_generate - n.sum()]] += 1
    return {label: int(k) for label, k in zip(counts.index, n, strict=True) if k > 0}


def generate_cells(model: SCDX, request: dict[str, int] | int, config: DemoConfig) -> MuData:
    """Generate paired cells with the model: per cell type, or unconditionally.

    Parameters
    ----------
    model
        The trained model.
    request
        ``{cell type: n}`` or a number of cells.
    config
        Demo settings (seed, progress bars).

    Returns
    -------
    The generated cells (counts; ATAC as 0/1).
    """
    kwargs = {"labels": request} if isinstance(request, dict) else {"n_cells": request}
    return model.generate(**kwargs, seed=config.seed, progress=config.progress)


# --------------------------------------------------------------------- translation


def translate_held_out(
    model: SCDX,
    held_out: MuData,
    data: DemoData,
    directions: list[tuple[str, str]],
    config: DemoConfig,
) -> dict[tuple[str, str], AnnData]:
    """Translate the held-out cells, giving the model only an AnnData of the source modality.

    Parameters
    ----------
    model
        The trained model.
    held_out
        Held-out cells with every modality (only the source is passed to the model).
    data
        The loaded data (modality names and cell-type column).
    directions
        ``(source, target)`` pairs.
    config
        Demo settings (seed, progress bars).

    Returns
    -------
    ``{(source, target): AnnData}`` of the predicted targets, with the held-out cell types in
    ``obs`` when there are labels.
    """
    out = {}
    for source, target in directions:
        query = held_out.mod[data.modalities[source]].copy()
        result = model.get_translated_modality(
            query, source, target, seed=config.seed, progress=config.progress
        )
        if data.labels_key is not None and data.labels_key not in result.obs:
            result.obs[data.labels_key] = pd.Categorical(held_out.obs[data.labels_key])
        out[source, target] = result
    return out


def control_predictions(
    train: MuData, held_out: MuData, data: DemoData, source: str, target: str
) -> dict[str, np.ndarray]:
    """Predictions of the two controls for one direction, fitted on the training cells.

    Parameters
    ----------
    train, held_out
        Training and held-out cells.
    data
        The loaded data (modality names).
    source, target
        The direction.

    Returns
    -------
    ``{"kNN regression": ..., "mean profile": ...}``, held-out cells x target features.
    """
    from scdx_scvi.metrics import knn_prediction, mean_profile_prediction

    s, t = data.modalities[source], data.modalities[target]
    return {
        KNN_NAME: knn_prediction(
            train[s].X, train[t].X, held_out[s].X, source, target, k=KNN_NEIGHBOURS
        ),
        MEAN_NAME: mean_profile_prediction(train[t].X, held_out.n_obs, target),
    }


# ---------------------------------------------------------------------------- scores


def translation_scores(observed: Any, predicted: Any, target: str) -> dict[str, Any]:
    """Score a translation against the measured target of the same cells.

    Parameters
    ----------
    observed
        Measured target, raw counts (cells x features).
    predicted
        Prediction: values per 10k counts (RNA, protein) or accessibility probabilities (ATAC).
    target
        The target modality.

    Returns
    -------
    The headline metrics of :data:`TRANSLATION_METRICS` for ``target`` (means over features
    or cells) and, under ``"per_feature"``, the per-feature values of the first one. ATAC adds
    ``peaks_scored`` and ``auprc_chance`` (the mean share of open cells of the scored peaks).
    """
    from scdx_scvi.metrics import (
        auprc_per_feature,
        auroc_per_feature,
        log_cp10k,
        pearson_per_cell,
        pearson_per_feature,
    )

    predicted = np.asarray(predicted.X if hasattr(predicted, "X") else predicted)
    if target == "atac":
        auroc = auroc_per_feature(observed, predicted)
        scored = np.isfinite(auroc)
        is_open = sparse.csr_matrix(observed) > 0
        prevalence = np.asarray(is_open.mean(axis=0)).ravel()
        return {
            "auroc_per_peak": float(np.nanmean(auroc)),
            "auprc_per_peak": float(np.nanmean(auprc_per_feature(observed, predicted))),
            "peaks_scored": int(scored.sum()),
            "auprc_chance": float(prevalence[scored].mean()) if scored.any() else float("nan"),
            "per_feature": auroc,
        }
    truth, prediction = log_cp10k(observed), np.log1p(predicted)
    per_feature = pearson_per_feature(truth, prediction)
    first = TRANSLATION_METRICS[target][0][0]
    return {
        first: float(per_feature.mean()),
        "pearson_per_cell": float(pearson_per_cell(truth, prediction).mean()),
        "per_feature": per_feature,
    }


def _generation_matrix(x: Any, modality: str) -> sparse.csr_matrix:
    """Return counts as the generation metrics compare them: ATAC binarised, as SCDX makes it."""
    x = sparse.csr_matrix(x, dtype=np.float32)
    if modality == "atac":
        x.data = (x.data > 0).astype(np.float32)
        x.eliminate_zeros()
    return x


def reference_cells(
    train: MuData, labels_key: str | None, composition: dict[str, int] | int, seed: int
) -> np.ndarray:
    """Draw training cells with a given cell-type composition (the real reference sample).

    Parameters
    ----------
    train
        Training cells.
    labels_key
        Cell-type column, or ``None``.
    composition
        ``{cell type: n}``, or a number of cells without labels.
    seed
        Seed of the draw.

    Returns
    -------
    Sorted positions of training cells, drawn without replacement where a cell type has enough
    cells.
    """
    rng = np.random.default_rng(seed)
    if labels_key is None or not isinstance(composition, dict):
        n = int(composition if not isinstance(composition, dict) else sum(composition.values()))
        return np.sort(rng.choice(train.n_obs, size=n, replace=n > train.n_obs))
    labels = train.obs[labels_key].astype(str).to_numpy()
    picked = [np.zeros(0, dtype=int)]
    for label, count in composition.items():
        pool = np.flatnonzero(labels == str(label))
        picked.append(rng.choice(pool, size=count, replace=count > pool.size))
    return np.sort(np.concatenate(picked))


def generation_embeddings(
    fit: MuData,
    samples: dict[str, MuData],
    data: DemoData,
    seed: int,
    n_comps: int = 50,
) -> dict[str, dict[str, np.ndarray]]:
    """Project cell sets on principal components fitted on other real cells, per modality.

    The components (of log1p counts per 10k, ATAC binarised first as SCDX generates it) are
    fitted on ``fit``, training cells that are in none of the compared sets, so that no set is
    favoured by the space: two real samples then score as well as a perfect generator would.

    Parameters
    ----------
    fit
        Real cells to fit the components on.
    samples
        ``{name: cells}`` to project (e.g. held-out, generated and reference cells).
    data
        The loaded data (modality names).
    seed
        Seed of the PCA solver.
    n_comps
        Number of components (fewer if ``fit`` is small).

    Returns
    -------
    ``{modality: {name: cells x components}}``.
    """
    from scdx_scvi.metrics import pca_projection

    out = {}
    for m, mod in data.modalities.items():
        names = list(samples)
        stacked = sparse.vstack([_generation_matrix(samples[n][mod].X, m) for n in names])
        _, pcs = pca_projection(
            _generation_matrix(fit[mod].X, m), stacked, n_comps=n_comps, random_state=seed
        )
        ends = np.cumsum([samples[n].n_obs for n in names])
        out[m] = dict(zip(names, np.split(pcs, ends[:-1]), strict=True))
    return out


def generation_metrics(
    embeddings: dict[str, dict[str, np.ndarray]], real: str, seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Score each set of cells against the real held-out cells, per modality.

    Parameters
    ----------
    embeddings
        Output of :func:`generation_embeddings`.
    real
        Name of the real held-out set in ``embeddings``; every other set is scored against it.
    seed
        Seed of the classifiers (three splits from ``seed``).

    Returns
    -------
    ``{modality: {set name: scores}}`` with :func:`~scdx_scvi.metrics.mmd_rbf`,
    :func:`~scdx_scvi.metrics.energy_distance`, :func:`~scdx_scvi.metrics.classifier_auc`
    (mean and spread over three splits), :func:`~scdx_scvi.metrics.mixing_score` and the
    numbers of cells and components.
    """
    from scdx_scvi.metrics import classifier_auc, energy_distance, mixing_score, mmd_rbf

    out: dict[str, dict[str, dict[str, float]]] = {}
    for m, sets in embeddings.items():
        reference = sets[real]
        out[m] = {}
        for name, cells in sets.items():
            if name == real:
                continue
            auc = classifier_auc(reference, cells, seeds=(seed, seed + 1, seed + 2))
            out[m][name] = {
                "mmd_rbf": mmd_rbf(reference, cells),
                "energy_distance": energy_distance(reference, cells),
                "classifier_auc": auc["auc"],
                "classifier_auc_std": auc["auc_std"],
                "mixing": mixing_score(reference, cells),
                "n_real": int(reference.shape[0]),
                "n_generated": int(cells.shape[0]),
                "n_comps": int(reference.shape[1]),
            }
    return out


# --------------------------------------------------------------------------- figures


def plot_umaps(
    embeddings: dict[str, dict[str, np.ndarray]],
    labels: dict[str, np.ndarray] | None,
    labels_key: str | None,
    folder: Path,
    seed: int,
) -> list[Path]:
    """Draw a UMAP per modality of the held-out real cells and the generated cells.

    Parameters
    ----------
    embeddings
        ``{modality: {"real": PCs, "SCDX": PCs}}``, e.g. from :func:`generation_embeddings`.
    labels
        ``{"real": cell types, "SCDX": cell types}``, or ``None`` without labels.
    labels_key
        Name of the cell-type column (for the title).
    folder
        Folder to write ``umap_<modality>.png`` to.
    seed
        Seed of the UMAP.

    Returns
    -------
    The files written.
    """
    import anndata as ad
    import scanpy as sc
    from matplotlib.figure import Figure

    files = []
    for m, sets in embeddings.items():
        real_pcs, gen_pcs = sets["real"], sets[SCDX_NAME]
        n_pooled = len(real_pcs) + len(gen_pcs)
        pooled = ad.AnnData(obs=pd.DataFrame(index=[f"cell_{i}" for i in range(n_pooled)]))
        pooled.obsm["X_pca"] = np.concatenate([real_pcs, gen_pcs])
        sc.pp.neighbors(pooled, use_rep="X_pca", n_neighbors=min(15, n_pooled - 1))
        sc.tl.umap(pooled, random_state=seed)
        xy = pooled.obsm["X_umap"]
        origin = np.r_[np.zeros(len(real_pcs), bool), np.ones(len(gen_pcs), bool)]
        panels = 2 if labels is not None else 1
        fig = Figure(figsize=(6.2 * panels, 5.2))
        axes = fig.subplots(1, panels, squeeze=False)
        ax = axes[0, 0]
        styles = ((False, "real (held out)", "#1f77b4"), (True, "generated", "#ff7f0e"))
        for flag, name, colour in styles:
            ax.scatter(*xy[origin == flag].T, s=6, c=colour, label=name, alpha=0.7, linewidths=0)
        ax.set_title(f"{_DISPLAY[m]}: real held-out vs generated cells")
        ax.legend(markerscale=3, frameon=False)
        if labels is not None:
            _scatter_by_label(axes[0, 1], xy, np.r_[labels["real"], labels[SCDX_NAME]])
            axes[0, 1].set_title(f"{_DISPLAY[m]}: cell type ({labels_key}), real and generated")
        for ax in axes.ravel():
            ax.set_xlabel("UMAP 1")
            ax.set_ylabel("UMAP 2")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        path = folder / f"umap_{m}.png"
        fig.savefig(path, dpi=110)
        files.append(path)
    return files


def _scatter_by_label(ax: Any, xy: np.ndarray, labels: np.ndarray) -> None:
    from matplotlib import colormaps

    names = sorted(set(labels))
    cmap = colormaps["tab20" if len(names) > 10 else "tab10"]
    for i, name in enumerate(names):
        inside = labels == name
        ax.scatter(*xy[inside].T, s=6, color=cmap(i % cmap.N), label=name, alpha=0.7, linewidths=0)
    if len(names) <= 25:
        ax.legend(
            markerscale=3, frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5)
        )


def plot_feature_scatter(
    scdx: np.ndarray, knn: np.ndarray, source: str, target: str, path: Path
) -> Path:
    """Scatter SCDX's per-feature Pearson against the kNN control's, one dot per feature.

    Parameters
    ----------
    scdx, knn
        Per-feature Pearson correlations of SCDX and of the kNN-regression control.
    source, target
        The direction (for the labels).
    path
        PNG file to write.

    Returns
    -------
    ``path``.
    """
    from matplotlib.figure import Figure

    unit = "gene" if target == "rna" else "protein"
    better = int((scdx > knn).sum())
    fig = Figure(figsize=(5.4, 5.2))
    ax = fig.subplots()
    ax.scatter(knn, scdx, s=8, alpha=0.6, linewidths=0, color="#2a6f97")
    low = float(min(knn.min(), scdx.min(), 0.0))
    high = float(max(knn.max(), scdx.max(), 0.0)) or 1.0
    ax.plot([low, high], [low, high], color="grey", lw=1, ls="--", label="equal")
    ax.set_xlabel(f"kNN regression (k={KNN_NEIGHBOURS}): Pearson per {unit}")
    ax.set_ylabel(f"SCDX: Pearson per {unit}")
    ax.set_title(
        f"{_direction_name(source, target)} on held-out cells\n"
        f"SCDX higher for {better} of {len(scdx)} {unit}s"
    )
    ax.legend(frameon=False, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


# ---------------------------------------------------------------------------- tables


def _fmt(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value + 0.0:.3f}".replace("-0.000", "0.000")


def translation_rows(translation: dict[str, dict[str, dict[str, float]]]) -> list[list[str]]:
    """Rows ``[direction, metric, better, SCDX, kNN, mean profile]`` of the translation table.

    Parameters
    ----------
    translation
        ``metrics["translation"]``.

    Returns
    -------
    Table rows (strings).
    """
    rows = []
    for direction, entry in translation.items():
        for key, label, better, _ in TRANSLATION_METRICS[entry["target"]]:
            scores = entry["scores"]
            values = [_fmt(scores[name][key]) for name in (SCDX_NAME, KNN_NAME, MEAN_NAME)]
            rows.append([direction, label, better, *values])
    return rows


def generation_rows(generation: dict[str, dict[str, dict[str, float]]]) -> list[list[str]]:
    """Rows ``[modality, metric, better, SCDX, training cells]`` of the generation table.

    Parameters
    ----------
    generation
        ``metrics["generation"]``.

    Returns
    -------
    Table rows (strings).
    """
    rows = []
    for m, methods in generation.items():
        for key, label, better, _ in GENERATION_METRICS:
            values = [_fmt(methods[name][key]) for name in (SCDX_NAME, REFERENCE_NAME)]
            rows.append([_DISPLAY[m], label, better, *values])
    return rows


TRANSLATION_HEADER = ["direction", "metric", "better", SCDX_NAME, KNN_NAME, MEAN_NAME]
GENERATION_HEADER = ["modality", "metric", "better", "SCDX generated", REFERENCE_NAME]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Format a table as aligned plain text.

    Parameters
    ----------
    header
        Column names.
    rows
        Rows of strings.

    Returns
    -------
    The table, one line per row.
    """
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)

    def line_of(row: list[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in pairs)

    cells = [line_of(r) for r in [header, *rows]]
    return "\n".join([cells[0], rule, *cells[1:]])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """Format a table as Markdown, numbers right-aligned.

    Parameters
    ----------
    header
        Column names.
    rows
        Rows of strings.

    Returns
    -------
    The Markdown table.
    """
    align = ["---" if i < 3 else "---:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


# ---------------------------------------------------------------------------- report


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _versus(value: float, other: float) -> str:
    if value > other + TIE:
        return "above"
    if value < other - TIE:
        return "below"
    return "about equal to"


def translation_reading(translation: dict[str, Any]) -> list[str]:
    """Say in words, per direction, how SCDX compares with the two controls.

    Parameters
    ----------
    translation
        ``metrics["translation"]``.

    Returns
    -------
    One Markdown paragraph per direction.
    """
    lines = []
    for direction, entry in translation.items():
        scores = entry["scores"]
        (key, label, _, _), (key2, label2, _, _) = TRANSLATION_METRICS[entry["target"]]
        s, k, mp = (scores[name][key] for name in (SCDX_NAME, KNN_NAME, MEAN_NAME))
        source = _DISPLAY[entry["source"]]
        if s > k + TIE:
            text = (
                f"SCDX predicts the individual cells better than both controls ({label} "
                f"{_fmt(s)}; kNN regression {_fmt(k)}, mean profile {_fmt(mp)})."
            )
        elif s > mp + TIE:
            how = "less well than" if k > s + TIE else "about as well as"
            text = (
                f"SCDX uses each cell's measured {source} ({label} {_fmt(s)}, above the mean "
                f"profile's {_fmt(mp)}), {how} kNN regression ({_fmt(k)})."
            )
        else:
            text = (
                f"SCDX's predictions do not yet follow the individual cell: its {label} "
                f"({_fmt(s)}) is at the level of the mean profile ({_fmt(mp)}), which ignores "
                "the cell"
            )
            text += (
                f", while kNN regression reaches {_fmt(k)}, so the {source} of these cells does "
                "carry the information."
                if k > mp + TIE
                else f", and so is kNN regression ({_fmt(k)}): the {source} of these cells "
                "carries little information about the target."
            )
        s2, k2, mp2 = (scores[name][key2] for name in (SCDX_NAME, KNN_NAME, MEAN_NAME))
        text += (
            f" {label2}: SCDX {_fmt(s2)} is {_versus(s2, k2)} kNN regression ({_fmt(k2)}) and "
            f"{_versus(s2, mp2)} the mean profile ({_fmt(mp2)})."
        )
        if key2 == "pearson_per_cell" and s2 < mp2 - TIE:
            text += (
                " Below the mean profile here means that the predicted profiles vary from cell to "
                "cell in ways that do not match the measured cells."
            )
        lines.append(f"- **{direction}**: {text}")
    return lines


def generation_reading(generation: dict[str, Any]) -> list[str]:
    """Say in words, per modality, how realistic the generated cells are.

    Parameters
    ----------
    generation
        ``metrics["generation"]``.

    Returns
    -------
    One Markdown line per modality.
    """
    lines = []
    for m, sets in generation.items():
        gen, ref = sets[SCDX_NAME], sets[REFERENCE_NAME]
        auc, auc_ref = gen["classifier_auc"], ref["classifier_auc"]
        if auc <= auc_ref + 0.05:
            verdict = "by this measure they are as realistic as real cells"
        elif auc < 0.9:
            verdict = "they resemble real cells but can still be told apart"
        else:
            verdict = "they are still easy to tell apart from real cells"
        lines.append(
            f"- **{_DISPLAY[m]}**: a classifier tells generated from real held-out cells with "
            f"AUC {_fmt(auc)} (two real samples: {_fmt(auc_ref)}; 0.5 means indistinguishable), "
            f"and they mix with real cells at {_fmt(gen['mixing'])} (two real samples: "
            f"{_fmt(ref['mixing'])}): {verdict}."
        )
    return lines


def _summary_section(metrics: dict[str, Any]) -> list[str]:
    return [
        "## Results at a glance",
        "",
        "Translation of held-out cells (scores below; differences under "
        f"{TIE} are counted as ties):",
        "",
        *translation_reading(metrics["translation"]),
        "",
        "Generation of new cells:",
        "",
        *generation_reading(metrics["generation"]),
        "",
    ]


def _data_section(metrics: dict[str, Any]) -> list[str]:
    data, training = metrics["data"], metrics["training"]
    settings = metrics["settings"]
    features = ", ".join(
        f"{_DISPLAY[m]} {n:,} {'peaks' if m == 'atac' else 'features'}"
        for m, n in data["features"].items()
    )
    labels = (
        f"{data['n_cell_types']} cell types in `obs[{data['labels_key']!r}]`; generation is "
        "conditioned on them"
        if data["labels_key"]
        else "no cell-type labels; generation is unconditional"
    )
    early = " (stopped early: the validation loss had stopped improving)"
    ae_early = early if training["autoencoder_epochs"] < settings["max_epochs"] else ""
    steps = training["diffusion_steps"] or 0
    diff_early = early if steps is not None and steps < settings["diffusion_steps"] else ""
    lines = [
        "## What was run",
        "",
        f"- **Data**: {data['description']}. {data['n_cells']:,} cells measured in "
        f"{len(data['features'])} modalities ({features}); {labels}.",
        f"- **Split**: {data['n_held_out']:,} cells ({TEST_SHARE:.0%}, drawn at random with seed "
        f"{settings['seed']}) were held out and never seen in training; the model and both "
        f"controls were fitted on the other {data['n_train']:,} cells.",
        f"- **Model**: SCDX with the `{settings['architecture']}` autoencoder and a diffusion "
        f"U-Net of base width {settings['n_channels']}; every other option is the package "
        "default.",
        f"- **Training**: autoencoder {training['autoencoder_epochs']} epochs "
        f"(at most {settings['max_epochs']}){ae_early}; latent diffusion {steps:,} optimiser "
        f"steps (at most {settings['diffusion_steps']:,}){diff_early}; on "
        f"`{training['device']}`.",
        f"- **Generation**: {metrics['generation_cells']:,} new cells"
        + (" with the held-out cell-type composition" if data["labels_key"] else "")
        + ", sampled with DPM-Solver++ (25 steps).",
        "- **Translation**: the held-out cells were given to the model as an AnnData holding only "
        "the source modality (no cell type), and the target modality was predicted (the "
        "default: the denoiser's conditional-mean estimate, one evaluation per cell).",
        "",
        "Timings (wall clock):",
        "",
        "| step | time |",
        "|---|---:|",
        *(f"| {step} | {_minutes(sec)} |" for step, sec in metrics["timings_seconds"].items()),
        f"| **total** | **{_minutes(sum(metrics['timings_seconds'].values()))}** |",
        "",
    ]
    return lines


def _translation_section(metrics: dict[str, Any], figures: dict[str, str]) -> list[str]:
    translation = metrics["translation"]
    lines = [
        "## Cross-modality translation of held-out cells",
        "",
        "SCDX predicted one modality from the other for the held-out cells, and the prediction is "
        "compared with what was actually measured in those cells. Two controls, fitted on the "
        "same training cells, show what simple methods reach:",
        "",
        f"- **{KNN_NAME}**: for each held-out cell, the {KNN_NEIGHBOURS} training cells with the "
        "most similar source profile (in a 50-component truncated SVD of log1p counts per 10k "
        "for RNA or protein, of binarised accessibility for ATAC), and the average of their "
        "target profiles;",
        f"- **{MEAN_NAME}**: the average training profile of the target, the same for every cell "
        "(it knows nothing about the individual cell).",
        "",
        markdown_table(TRANSLATION_HEADER, translation_rows(translation)),
        "",
    ]
    for direction, entry in translation.items():
        if entry["target"] == "atac":
            lines.append(
                f"{direction}: {entry['peaks_scored']:,} peaks were open in some but not all "
                f"held-out cells and were scored; the AUPRC of a random guess is "
                f"{_fmt(entry['auprc_chance'])} (the average share of cells in which a scored "
                "peak is open)."
            )
            lines.append("")
    lines += ["What the metrics mean:", ""]
    seen = set()
    for entry in translation.values():
        for _, label, _, meaning in TRANSLATION_METRICS[entry["target"]]:
            if (label, meaning) not in seen:
                seen.add((label, meaning))
                lines.append(f"- **{label}** ({_DISPLAY[entry['target']]}): {meaning}")
    lines.append("")
    if "feature_scatter" in figures:
        lines += [
            f"![Per-gene Pearson, SCDX vs kNN regression]({figures['feature_scatter']})",
            "",
            "Each dot is a gene: its Pearson correlation between predicted and measured "
            "expression across the held-out cells, for SCDX (vertical) and for the kNN control "
            "(horizontal). Dots above the dashed line are genes that SCDX predicts better.",
            "",
        ]
    return lines


def _generation_section(metrics: dict[str, Any], figures: dict[str, str]) -> list[str]:
    generation = metrics["generation"]
    n_reference = next(iter(generation.values()))[REFERENCE_NAME]["n_generated"]
    lines = [
        "## Generation of new cells",
        "",
        f"SCDX generated {metrics['generation_cells']:,} new paired cells. They are compared "
        "with the held-out real cells in a PCA (log1p counts per 10k; ATAC binarised, as SCDX "
        f"generates it) fitted on {metrics['generation_pca_cells']:,} other training cells, so "
        f"that the space favours neither set. The **{REFERENCE_NAME}** column scores a real "
        f"sample of {n_reference:,} training cells with the same cell-type composition instead "
        "of generated cells: two real samples are not identical either, so this is what a "
        "perfect generator would score here.",
        "",
        markdown_table(GENERATION_HEADER, generation_rows(generation)),
        "",
        "What the metrics mean:",
        "",
        *(f"- **{label}**: {meaning}" for _, label, _, meaning in GENERATION_METRICS),
        "",
    ]
    for m in generation:
        key = f"umap_{m}"
        if key in figures:
            lines += [f"![UMAP of {_DISPLAY[m]}]({figures[key]})", ""]
    if any(k.startswith("umap_") for k in figures):
        lines += [
            "In each UMAP (computed from the PCA above), real held-out and generated cells are "
            "drawn together: generated cells that fall among real cells of their own cell type, "
            "rather than in clouds of their own, are realistic.",
            "",
        ]
    return lines


def _files_section(metrics: dict[str, Any]) -> list[str]:
    descriptions = {
        "model/": "the trained model (`scdx_scvi.SCDX.load(...)`, or `scdx generate` / "
        "`scdx translate` on the command line)",
        "generated.h5mu": "the generated cells: counts per modality (ATAC as 0/1) with the "
        "training features, and their cell type in `obs`",
        "metrics.json": "every number of this report, and the settings",
        "report.md": "this report",
    }
    lines = ["## Files", ""]
    for name in metrics["files"]:
        if name in metrics["translation_files"]:
            direction = metrics["translation_files"][name]
            target = metrics["translation"][direction]["target"]
            values = "accessibility probabilities" if target == "atac" else "values per 10k counts"
            what = (
                f"the {direction} translation of the held-out cells: {values}, the training "
                "features as `var`"
            )
        elif name.startswith("figures/umap_"):
            what = "UMAP of real held-out and generated cells"
        elif name.startswith("figures/"):
            what = "per-gene Pearson of SCDX against the kNN control"
        else:
            what = descriptions.get(name, "")
        lines.append(f"- `{name}`: {what}" if what else f"- `{name}`")
    lines += [
        "",
        "Next steps with the saved model:",
        "",
        "```bash",
        f"scdx generate {metrics['out']}/model --n-cells 500 --out more_cells.h5mu",
        f"scdx translate {metrics['out']}/model rna_only.h5ad --source rna --target "
        f"{'atac' if 'atac' in metrics['data']['features'] else 'protein'} --out predicted.h5ad",
        "```",
        "",
    ]
    return lines


def _caveats_section(metrics: dict[str, Any]) -> list[str]:
    settings = metrics["settings"]
    lines = [
        "## Keep in mind",
        "",
        f"- This demo trains briefly (at most {settings['max_epochs']} autoencoder epochs and "
        f"{settings['diffusion_steps']:,} diffusion steps, a U-Net of width "
        f"{settings['n_channels']}) so that it runs in minutes on a laptop CPU: it shows the "
        "workflow and how to read its results, not the best the method can do. `scdx train` "
        "trains with the package defaults (up to 300 epochs and 100,000 diffusion steps, a U-Net "
        "of width 128), best on a GPU.",
        f"- Where SCDX does not beat {KNN_NAME} on a metric, a plain average over similar "
        "training cells does as well for that task in this run.",
        "- Translation was run as for new, unannotated cells: the model saw only the source "
        "modality, not the cell type.",
    ]
    if metrics["data"]["simulated"]:
        lines.append(
            "- The data are simulated (negative binomial RNA, mostly 0/1 ATAC, cell types with "
            "their own programs, planted gene-peak links): the scores show how the workflow runs "
            "and how to read it, not how SCDX will do on a given tissue. Run `scdx demo --data "
            "your.h5mu` on paired real data to find out."
        )
    return [*lines, ""]


def write_report(path: Path, metrics: dict[str, Any], figures: dict[str, str]) -> Path:
    """Write the Markdown report: what was run, the scores against the controls, the figures.

    Parameters
    ----------
    path
        The ``report.md`` to write.
    metrics
        Everything :func:`run_demo` measured (the content of ``metrics.json``).
    figures
        ``{figure name: path relative to the report}``.

    Returns
    -------
    ``path``.
    """
    lines = [
        "# SCDX demo report",
        "",
        "SCDX learns paired single-cell modalities (RNA with ATAC or surface protein) jointly: "
        "an autoencoder compresses each modality of a cell into a short latent vector, and a "
        "diffusion model learns how those vectors go together. It can then **generate** new "
        "paired cells of a chosen cell type and **translate** a cell measured in one modality "
        "into another (for example predict chromatin accessibility from RNA).",
        "",
        f"Created {metrics['created']} with scdx-scvi {metrics['version']} "
        f"(`{metrics['command']}`), on {metrics['machine']}.",
        "",
        *_summary_section(metrics),
        *_data_section(metrics),
        *_translation_section(metrics, figures),
        *_generation_section(metrics, figures),
        *_files_section(metrics),
        *_caveats_section(metrics),
    ]
    path.write_text("\n".join(lines))
    return path


# ------------------------------------------------------------------------------- run


class _Stopwatch:
    """Records the wall-clock seconds of named steps."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - start


def _prepare_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise DemoInputError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _translation_file(source: str, target: str, directions: list[tuple[str, str]]) -> str:
    """``translated_<target>.h5ad``, naming the source when two directions share a target."""
    shared = sum(t == target for _, t in directions) > 1
    return f"translated_{target}_from_{source}.h5ad" if shared else f"translated_{target}.h5ad"


def _describe_split(data: DemoData, train: MuData, held_out: MuData) -> str:
    sizes = ", ".join(
        f"{_DISPLAY[m]} {data.mdata.mod[mod].n_vars:,}" for m, mod in data.modalities.items()
    )
    labels = (
        f"{data.mdata.obs[data.labels_key].nunique()} cell types ({data.labels_key!r})"
        if data.labels_key
        else "no cell-type labels"
    )
    return (
        f"  {data.description}\n  {data.mdata.n_obs:,} cells ({sizes} features), {labels}; "
        f"{train.n_obs:,} training and {held_out.n_obs:,} held-out cells"
    )


def _check_split(train: MuData, held_out: MuData) -> None:
    if held_out.n_obs < 2 or train.n_obs <= KNN_NEIGHBOURS:
        raise DemoInputError(
            f"too few cells: {train.n_obs} training and {held_out.n_obs} held-out; the demo "
            f"needs more than {KNN_NEIGHBOURS} training and at least 2 held-out cells"
        )


def _score_translations(
    translated: dict[tuple[str, str], AnnData],
    controls: dict[tuple[str, str], dict[str, np.ndarray]],
    held_out: MuData,
    data: DemoData,
) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, np.ndarray]]]:
    """Scores per direction and method, and the per-feature values (for the scatter)."""
    summary, per_feature = {}, {}
    for (source, target), prediction in translated.items():
        observed = held_out[data.modalities[target]].X
        predictions = {SCDX_NAME: prediction.X, **controls[source, target]}
        scores = {name: translation_scores(observed, p, target) for name, p in predictions.items()}
        per_feature[source, target] = {n: s.pop("per_feature") for n, s in scores.items()}
        entry: dict[str, Any] = {"source": source, "target": target, "scores": scores}
        if target == "atac":
            for key in ("peaks_scored", "auprc_chance"):
                entry[key] = scores[SCDX_NAME][key]
            for s in scores.values():
                del s["peaks_scored"], s["auprc_chance"]
        summary[_direction_name(source, target)] = entry
    return summary, per_feature


def _generation_sets(
    train: MuData, held_out: MuData, generated: MuData, data: DemoData, seed: int
) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """PCs of the real held-out, generated and reference cells, and the reference size.

    The reference is a real sample of training cells with the generated composition (at most
    half of the training cells); the components are fitted on the other training cells.
    """
    n_reference = min(generated.n_obs, train.n_obs // 2)
    if data.labels_key is not None:
        known = list(train.obs[data.labels_key].astype(str).unique())
        composition = generation_request(generated.obs[data.labels_key], known, n_reference)
    else:
        composition = n_reference
    rows = reference_cells(train, data.labels_key, composition, seed)
    others = np.setdiff1d(np.arange(train.n_obs), rows)
    samples = {"real": held_out, SCDX_NAME: generated, REFERENCE_NAME: train[rows].copy()}
    return generation_embeddings(train[others].copy(), samples, data, seed), int(others.size)


def _draw_figures(
    embeddings: dict[str, dict[str, np.ndarray]],
    held_out: MuData,
    generated: MuData,
    data: DemoData,
    per_feature: dict[tuple[str, str], dict[str, np.ndarray]],
    out: Path,
    seed: int,
) -> dict[str, str]:
    """Draw the UMAPs and the per-gene scatter (PNG); return them relative to ``out``."""
    (out / "figures").mkdir(exist_ok=True)
    figures = {}
    labels = None
    if data.labels_key is not None:
        labels = {
            "real": held_out.obs[data.labels_key].astype(str).to_numpy(),
            SCDX_NAME: generated.obs[data.labels_key].astype(str).to_numpy(),
        }
    for path in plot_umaps(embeddings, labels, data.labels_key, out / "figures", seed):
        figures[path.stem] = path.relative_to(out).as_posix()
    to_rna = [pair for pair in per_feature if pair[1] == "rna"]
    if to_rna:
        source, target = to_rna[0]
        values = per_feature[source, target]
        path = out / "figures" / "pearson_per_gene_scdx_vs_knn.png"
        plot_feature_scatter(values[SCDX_NAME], values[KNN_NAME], source, target, path)
        figures["feature_scatter"] = path.relative_to(out).as_posix()
    return figures


def _machine() -> str:
    import torch

    device = f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "CPU only"
    return f"{platform.machine()}, {device}, {torch.get_num_threads()} torch threads"


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def print_tables(metrics: dict[str, Any], say: Callable[[str], None] = _say) -> None:
    """Print the translation and generation tables of a demo run.

    Parameters
    ----------
    metrics
        The content of ``metrics.json``.
    say
        Where to print.
    """
    say("\nTranslation of held-out cells (SCDX and two controls fitted on the training cells)")
    say(text_table(TRANSLATION_HEADER, translation_rows(metrics["translation"])))
    for direction, entry in metrics["translation"].items():
        if entry["target"] == "atac":
            say(f"  {direction}: AUROC chance 0.5; AUPRC chance {_fmt(entry['auprc_chance'])}")
    say("\nGeneration vs held-out real cells (training cells: a real sample, same cell types)")
    say(text_table(GENERATION_HEADER, generation_rows(metrics["generation"])))


def run_demo(config: DemoConfig, command: str = "scdx demo") -> DemoResult:
    """Run the demo end to end and write its output folder.

    Steps: load the data (:func:`load_data`), hold out cells (:func:`split_cells`), train SCDX
    (:func:`train_model`), generate cells per cell type (:func:`generate_cells`), translate the
    held-out cells both ways (:func:`translate_held_out`), score everything against the
    controls, draw the figures and write ``model/``, ``generated.h5mu``,
    ``translated_*.h5ad``, ``figures/``, ``metrics.json`` and ``report.md`` to ``config.out``.

    Parameters
    ----------
    config
        Demo settings.
    command
        The command line, for the report.

    Returns
    -------
    The output folder, the metrics and the files written.
    """
    with _quiet_libraries():
        return _run(config, command)


def _run(config: DemoConfig, command: str) -> DemoResult:
    """Run the steps of :func:`run_demo`."""
    import scdx_scvi

    out = _prepare_out(Path(config.out))
    clock, files = _Stopwatch(), []
    _say("[1/6] Loading data")
    with clock("load and split the data"):
        data = load_data(config)
        test = split_cells(data.mdata.n_obs, config.seed)
        train, held_out = data.mdata[~test].copy(), data.mdata[test].copy()
    _check_split(train, held_out)
    _say(_describe_split(data, train, held_out))

    _say(
        f"[2/6] Training SCDX: autoencoder (at most {config.max_epochs} epochs), then latent "
        f"diffusion ({config.diffusion_steps:,} steps; its bar counts passes over the cells)"
    )
    with clock("train SCDX"):
        model = train_model(train, data, config)
    model.save(out / "model", overwrite=True, save_anndata=False)
    files.append("model/")
    training = training_summary(model, config)
    _say(
        f"  autoencoder {training['autoencoder_epochs']} epochs, diffusion "
        f"{training['diffusion_steps']} steps, in {clock.seconds['train SCDX']:.0f} s"
    )

    _say("[3/6] Generating cells")
    labels = held_out.obs[data.labels_key] if data.labels_key else None
    known = list(train.obs[data.labels_key].astype(str).unique()) if data.labels_key else []
    n_generate = config.n_generate if config.n_generate or labels is not None else held_out.n_obs
    with clock("generate cells"):
        generated = generate_cells(model, generation_request(labels, known, n_generate), config)
    generated.write_h5mu(out / "generated.h5mu")
    files.append("generated.h5mu")
    _say(f"  {generated.n_obs:,} cells written to {out / 'generated.h5mu'}")

    _say("[4/6] Translating the held-out cells")
    directions = translation_directions(data.modalities)
    with clock("translate held-out cells"):
        translated = translate_held_out(model, held_out, data, directions, config)
    translation_files = {}
    for (source, target), result in translated.items():
        name = _translation_file(source, target, directions)
        result.write_h5ad(out / name)
        files.append(name)
        translation_files[name] = _direction_name(source, target)
        _say(f"  {_direction_name(source, target)}: {result.shape[0]:,} cells -> {out / name}")

    _say("[5/6] Scoring against the controls")
    with clock("controls (kNN regression, mean profile)"):
        controls = {(s, t): control_predictions(train, held_out, data, s, t) for s, t in directions}
    with clock("score translation and generation"):
        translation, per_feature = _score_translations(translated, controls, held_out, data)
        embeddings, n_fit = _generation_sets(train, held_out, generated, data, config.seed)
        generation = generation_metrics(embeddings, "real", config.seed)

    _say("[6/6] Writing figures and the report")
    figures: dict[str, str] = {}
    if config.figures:
        with clock("figures"):
            figures = _draw_figures(
                embeddings, held_out, generated, data, per_feature, out, config.seed
            )
        files += sorted(figures.values())
    files += ["metrics.json", "report.md"]
    metrics = {
        "created": datetime.now().isoformat(timespec="seconds"),
        "version": scdx_scvi.__version__,
        "command": command,
        "machine": _machine(),
        "out": str(out),
        "settings": asdict(config),
        "data": {
            "description": data.description,
            "simulated": data.simulated,
            "n_cells": int(data.mdata.n_obs),
            "n_train": int(train.n_obs),
            "n_held_out": int(held_out.n_obs),
            "features": {m: int(data.mdata.mod[mod].n_vars) for m, mod in data.modalities.items()},
            "labels_key": data.labels_key,
            "n_cell_types": int(data.mdata.obs[data.labels_key].nunique())
            if data.labels_key
            else 0,
        },
        "training": training,
        "generation_cells": int(generated.n_obs),
        "generation_pca_cells": n_fit,
        "timings_seconds": {k: round(v, 1) for k, v in clock.seconds.items()},
        "translation": translation,
        "translation_files": translation_files,
        "generation": generation,
        "files": files,
    }
    metrics = _json_ready(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_report(out / "report.md", metrics, figures)
    print_tables(metrics)
    _say(f"\nReport: {out / 'report.md'}")
    return DemoResult(out=out, metrics=metrics, files=files)
