"""Genomic coordinates of peaks and genes, and the candidate gene–peak pairs they define."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

#: Default largest distance (bp) between a peak's centre and a gene's TSS for a candidate pair.
#: 150 kb is GLUE's window and SCENIC+'s search space; Signac uses 500 kb, ArchR 250 kb.
DEFAULT_WINDOW = 150_000

#: ``chr1_100_200``, ``chr1:100-200`` or ``chr1-100-200`` (the chromosome may contain ``_``).
_REGION_PATTERN = r"^(?P<chrom>.+?)[:_-](?P<start>\d+)[_-](?P<end>\d+)$"
_COORDINATES = ("chrom", "start", "end")


def parse_regions(names: Sequence[str]) -> pd.DataFrame:
    """Parse region names such as ``chr1_100_200``, ``chr1:100-200`` or ``chr1-100-200``.

    Parameters
    ----------
    names
        Region (peak) names.

    Returns
    -------
    DataFrame indexed by the names with columns ``chrom`` (str), ``start`` and ``end``
    (int64).

    Raises
    ------
    ValueError
        If a name does not follow one of the three styles, or has ``end < start``.
    """
    index = pd.Index(np.asarray(names).astype(str))
    parts = pd.Series(index, index=index).str.extract(_REGION_PATTERN)
    bad = parts["chrom"].isna()
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {len(index)} region names are not of the form "
            f"'chr1_100_200', 'chr1:100-200' or 'chr1-100-200', e.g. "
            f"{index[bad.to_numpy()][:3].tolist()}; give the coordinates as `var` columns "
            "'chrom', 'start', 'end' instead."
        )
    out = pd.DataFrame(
        {
            "chrom": parts["chrom"].astype(str),
            "start": parts["start"].astype(np.int64),
            "end": parts["end"].astype(np.int64),
        },
        index=index,
    )
    _check_intervals(out, "region names")
    return out


def peak_coordinates(var: pd.DataFrame) -> pd.DataFrame:
    """Coordinates of peaks: from ``var`` columns ``chrom``/``start``/``end``, else the names.

    Parameters
    ----------
    var
        The peaks' ``var`` (index: peak names).

    Returns
    -------
    DataFrame indexed like ``var`` with columns ``chrom``, ``start``, ``end``.
    """
    if all(c in var.columns for c in _COORDINATES):
        out = pd.DataFrame(
            {
                "chrom": var["chrom"].astype(str).to_numpy(),
                "start": pd.to_numeric(var["start"]).to_numpy(np.int64),
                "end": pd.to_numeric(var["end"]).to_numpy(np.int64),
            },
            index=var.index.astype(str),
        )
        _check_intervals(out, "var columns 'chrom', 'start', 'end'")
        return out
    return parse_regions(var.index)


def read_tss_bed(
    path: str | os.PathLike, position: Literal["center", "five_prime"] = "center"
) -> pd.DataFrame:
    """Read a BED file of genes (``chrom, start, end, name[, score, strand, ...]``).

    Lines starting with ``#``, ``track`` or ``browser`` are skipped. A gene listed more than
    once keeps its first row.

    Parameters
    ----------
    path
        The BED file (tab-separated, 0-based starts), e.g. the TSS tables in
        ``shared/data/annotations``.
    position
        Where the TSS is in each row: ``"center"`` (each row is a window centred on the TSS,
        as the ABC ``TSS500bp`` tables) or ``"five_prime"`` (rows are gene bodies: the TSS is
        ``start`` on the ``+`` strand and ``end`` on the ``-`` strand; needs the strand column).

    Returns
    -------
    DataFrame indexed by gene name with columns ``chrom`` and ``tss`` (int64).
    """
    if position not in ("center", "five_prime"):
        raise ValueError(f"position must be 'center' or 'five_prime', got {position!r}.")
    rows = []
    with open(path) as handle:
        for line in handle:
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            rows.append(line.rstrip("\n").split("\t"))
    if not rows or min(len(r) for r in rows) < 4:
        raise ValueError(
            f"{os.fspath(path)!r} is not a BED file with at least four columns "
            "(chrom, start, end, name)."
        )
    bed = pd.DataFrame([r[:6] for r in rows])
    start, end = bed[1].astype(np.int64), bed[2].astype(np.int64)
    if position == "center":
        tss = (start + end) // 2
    else:
        if bed.shape[1] < 6:
            raise ValueError("position='five_prime' needs a strand (sixth) column in the BED.")
        tss = np.where(bed[5] == "-", end, start)
    out = pd.DataFrame(
        {"chrom": bed[0].to_numpy(str), "tss": np.asarray(tss, dtype=np.int64)},
        index=pd.Index(bed[3].to_numpy(str), name=None),
    )
    return out[~out.index.duplicated()]


def gene_tss(
    var: pd.DataFrame, tss: pd.DataFrame | str | os.PathLike | None = None
) -> pd.DataFrame:
    """TSS of each gene of ``var``: from a TSS table, or from ``var`` columns.

    Parameters
    ----------
    var
        The genes' ``var`` (index: gene names).
    tss
        A table from :func:`read_tss_bed` (or the path of a BED file, read with the TSS at the
        centre of each row), matched to the genes by name. ``None``: ``var`` columns ``chrom``
        and ``tss``, or ``chrom`` and ``start`` (plus ``end`` and ``strand``; the TSS is
        ``start``, or ``end`` on the ``-`` strand).

    Returns
    -------
    DataFrame with columns ``chrom`` and ``tss``, indexed by the genes that have a TSS (in the
    order of ``var``); genes without one are left out.

    Raises
    ------
    ValueError
        If there are no coordinates at all.
    """
    names = var.index.astype(str)
    if tss is not None:
        table = read_tss_bed(tss) if isinstance(tss, str | os.PathLike) else tss
        missing = {"chrom", "tss"} - set(table.columns)
        if missing:
            raise ValueError(
                f"The TSS table lacks columns {sorted(missing)}; read a BED with "
                "`scdx_scvi.data.read_tss_bed`."
            )
        table = table.loc[names[names.isin(table.index)], ["chrom", "tss"]]
    elif "chrom" in var.columns and ("tss" in var.columns or "start" in var.columns):
        if "tss" in var.columns:
            position = pd.to_numeric(var["tss"])
        elif "strand" in var.columns and "end" in var.columns:
            position = pd.Series(
                np.where(var["strand"].astype(str) == "-", var["end"], var["start"]),
                index=var.index,
            )
        else:
            position = pd.to_numeric(var["start"])
        table = pd.DataFrame(
            {"chrom": var["chrom"].astype(str).to_numpy(), "tss": position.to_numpy()},
            index=names,
        )
        table = table[table["tss"].notna() & (var["chrom"].notna().to_numpy())]
        table["tss"] = table["tss"].astype(np.int64)
    else:
        raise ValueError(
            "The genes have no coordinates: pass a TSS table (`tss=` a BED file or "
            "`scdx_scvi.data.read_tss_bed(...)`), or add `var` columns 'chrom' and 'tss' (or "
            "'chrom' and 'start'), or give the candidate pairs yourself (`candidates=` a "
            "DataFrame with columns 'gene' and 'peak')."
        )
    if table.empty:
        raise ValueError(
            "None of the genes has a TSS in the table: check that the table uses the same gene "
            f"names (e.g. {names[:3].tolist()}) and the same genome."
        )
    return table


def candidate_pairs(
    tss: pd.DataFrame, peaks: pd.DataFrame, window: int = DEFAULT_WINDOW
) -> pd.DataFrame:
    """All gene–peak pairs whose peak centre lies within ``window`` bp of the gene's TSS.

    Parameters
    ----------
    tss
        Genes, with columns ``chrom`` and ``tss`` (see :func:`gene_tss`).
    peaks
        Peaks, with columns ``chrom``, ``start`` and ``end`` (see :func:`peak_coordinates`).
    window
        Largest distance (bp) between the peak's centre and the TSS.

    Returns
    -------
    DataFrame with columns ``gene``, ``peak`` and ``distance`` (bp, ``|centre - TSS|``), ordered
    by gene (as in ``tss``) and then by peak (as in ``peaks``).
    """
    if window < 0:
        raise ValueError(f"window must be non-negative, got {window}.")
    centre = ((peaks["start"].to_numpy() + peaks["end"].to_numpy()) // 2).astype(np.int64)
    chrom = peaks["chrom"].to_numpy().astype(str)
    by_chrom = {}
    for c in np.unique(chrom):
        idx = np.flatnonzero(chrom == c)
        order = np.argsort(centre[idx], kind="stable")
        by_chrom[c] = (idx[order], centre[idx][order])
    genes, hits, distances = [], [], []
    for g, (c, position) in enumerate(zip(tss["chrom"].astype(str), tss["tss"], strict=True)):
        if c not in by_chrom:
            continue
        idx, centres = by_chrom[c]
        lo = np.searchsorted(centres, position - window, side="left")
        hi = np.searchsorted(centres, position + window, side="right")
        found = np.sort(idx[lo:hi])
        genes.append(np.full(found.size, g))
        hits.append(found)
        distances.append(np.abs(centre[found] - position))
    gene_idx = np.concatenate(genes) if genes else np.zeros(0, int)
    peak_idx = np.concatenate(hits) if hits else np.zeros(0, int)
    return pd.DataFrame(
        {
            "gene": tss.index.to_numpy().astype(str)[gene_idx],
            "peak": peaks.index.to_numpy().astype(str)[peak_idx],
            "distance": (np.concatenate(distances) if distances else np.zeros(0)).astype(float),
        }
    )


def _check_intervals(coordinates: pd.DataFrame, where: str) -> None:
    bad = coordinates["end"] < coordinates["start"]
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} regions in {where} end before they start, e.g. "
            f"{coordinates.index[bad.to_numpy()][:3].tolist()}."
        )
