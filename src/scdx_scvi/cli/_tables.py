"""The demo's tables: metric definitions, rows, plain-text and Markdown layout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from scdx_scvi.metrics import REFERENCE_NAME
from scdx_scvi.metrics._tasks import KNN_NAME, MEAN_NAME, RIDGE_NAME

from ._inputs import DISPLAY as _DISPLAY

#: Differences of scores below this count as ties when the report puts the tables in words.
TIE = 0.01
#: Name of the model in tables, files and ``metrics.json``.
SCDX_NAME = "SCDX"
#: Methods of the translation table, in column order.
TRANSLATION_METHODS = (SCDX_NAME, KNN_NAME, RIDGE_NAME, MEAN_NAME)

#: Translation metrics per target modality: key, label, better, one-sentence meaning.
TRANSLATION_METRICS: dict[str, list[tuple[str, str, str, str]]] = {
    "rna": [
        (
            "pearson_per_feature",
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
            "pearson_per_feature",
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


def _fmt(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value + 0.0:.3f}".replace("-0.000", "0.000")


def translation_rows(translation: dict[str, dict[str, dict[str, float]]]) -> list[list[str]]:
    """Rows ``[direction, metric, better, SCDX, kNN, ridge, mean profile]`` of the table.

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
            values = [_fmt(scores[name][key]) for name in TRANSLATION_METHODS]
            rows.append([direction, label, better, *values])
    return rows


def generation_rows(generation: dict[str, dict[str, dict[str, float]]]) -> list[list[str]]:
    """Rows ``[modality, metric, better, SCDX, real-vs-real floor]`` of the generation table.

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


TRANSLATION_HEADER = ["direction", "metric", "better", *TRANSLATION_METHODS]
GENERATION_HEADER = ["modality", "metric", "better", "SCDX generated", "real-vs-real floor"]


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


def print_tables(metrics: dict[str, Any], say: Callable[[str], None] = print) -> None:
    """Print the translation and generation tables of a demo run.

    Parameters
    ----------
    metrics
        The content of ``metrics.json``.
    say
        Where to print.
    """
    say("\nTranslation of held-out cells (SCDX and three controls fitted on the training cells)")
    say(text_table(TRANSLATION_HEADER, translation_rows(metrics["translation"])))
    for direction, entry in metrics["translation"].items():
        if entry["target"] == "atac":
            chance = entry["chance"]
            say(
                f"  {direction}: AUROC chance {_fmt(chance['auroc_per_peak'])}; AUPRC chance "
                f"{_fmt(chance['auprc_per_peak'])}"
            )
    say("\nGeneration vs held-out real cells (floor: real training cells, same cell types)")
    say(text_table(GENERATION_HEADER, generation_rows(metrics["generation"])))
