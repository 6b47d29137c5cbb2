"""Generated-vs-real UMAPs and per-feature score scatters, one implementation of each.

Both functions return a :class:`matplotlib.figure.Figure` that is not registered with pyplot, so
scripts can draw many of them without closing windows; save it with ``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Colours of the real and the compared set in the UMAP panels.
REAL_COLOUR, OTHER_COLOUR = "#1f77b4", "#ff7f0e"


def _umap(real: np.ndarray, other: np.ndarray, names: tuple[str, str], seed: int):
    """Pool two embedded sets in an AnnData and compute their UMAP with scanpy."""
    import anndata as ad
    import scanpy as sc

    n = len(real) + len(other)
    pooled = ad.AnnData(
        obs=pd.DataFrame(
            {"set": pd.Categorical([names[0]] * len(real) + [names[1]] * len(other), list(names))},
            index=[f"cell_{i}" for i in range(n)],
        )
    )
    pooled.obsm["X_emb"] = np.concatenate([real, other]).astype(np.float32)
    # exact neighbours: scanpy's approximate ones (pynndescent, from 4,096 cells on) come back as
    # a scipy sparse array that scanpy 1.11 cannot read with scipy >= 1.15
    sc.pp.neighbors(
        pooled, use_rep="X_emb", n_neighbors=min(15, n - 1), transformer="sklearn",
        random_state=seed,
    )  # fmt: skip
    sc.tl.umap(pooled, random_state=seed)
    pooled.uns["set_colors"] = [REAL_COLOUR, OTHER_COLOUR]
    return pooled


def umap_real_vs_generated(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    labels: Mapping[str, Any] | None = None,
    labelled: str | None = None,
    title: str = "",
    real_name: str = "real",
    seed: int = 0,
) -> Figure:
    """UMAPs of real cells beside each other set of cells, optionally coloured by cell type.

    Each compared set gets its own panel: a UMAP (:func:`scanpy.tl.umap` on a
    :func:`scanpy.pp.neighbors` graph) of the real cells pooled with that set only, in the
    embedding of that pair, so a set far from the real cells does not squeeze the others. The
    panels are drawn with :func:`scanpy.pl.embedding`, coloured by set. With ``labels``, a last
    panel colours the panel of ``labelled`` by cell type.

    Parameters
    ----------
    pairs
        ``{set name: (real cells, set cells)}`` embedded together, e.g. by
        :func:`~scdx_scvi.metrics.joint_embedding` (cells x dimensions each).
    labels
        ``{real_name: cell types of the real cells, labelled: cell types of that set}``.
    labelled
        The set whose panel is also drawn by cell type (default: the first set).
    title
        Prefix of the panel titles (e.g. the modality).
    real_name
        Name of the real cells in the legends.
    seed
        Seed of the neighbours graph and the UMAP.

    Returns
    -------
    The figure.

    Examples
    --------
    >>> pair = joint_embedding(held_out["rna"].X, cells["rna"].X, "rna")
    >>> fig = umap_real_vs_generated({"generated": pair}, title="RNA")
    >>> fig.savefig("umap_rna.png")
    """
    import scanpy as sc
    from matplotlib.figure import Figure

    names = list(pairs)
    if not names:
        raise ValueError("`pairs` needs at least one set to compare with the real cells.")
    labelled = names[0] if labelled is None else labelled
    by_type = labels is not None and real_name in labels and labelled in labels
    panels = len(names) + by_type
    fig = Figure(figsize=(4.8 * panels, 4.4))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    prefix = f"{title}: " if title else ""
    for ax, name in zip(axes, names, strict=False):
        real, other = pairs[name]
        pooled = _umap(real, other, (real_name, name), seed)
        sc.pl.embedding(
            pooled, basis="umap", color="set", ax=ax, show=False, size=20, frameon=False,
            title=f"{prefix}{real_name} vs {name}", legend_fontsize=7,
        )  # fmt: skip
        if by_type and name == labelled:
            pooled.obs["cell type"] = pd.Categorical(
                np.concatenate([np.asarray(labels[real_name]), np.asarray(labels[name])]).astype(
                    str
                )
            )
            sc.pl.embedding(
                pooled, basis="umap", color="cell type", ax=axes[-1], show=False, size=20,
                frameon=False, title=f"{prefix}cell types, {real_name} and {name}",
                legend_fontsize=6,
            )  # fmt: skip
    fig.tight_layout()
    return fig


def feature_scatter(
    scores: Mapping[str, np.ndarray], reference: str, metric: str, title: str = ""
) -> Figure:
    """Per-feature scores of one method against each other method, one dot per feature.

    Parameters
    ----------
    scores
        ``{method: per-feature score}`` (e.g. Pearson per gene or AUROC per peak); NaN values
        (features that cannot be scored) are left out.
    reference
        The method on the vertical axis of every panel; each other method gets a panel.
    metric
        Name of the score, for the axis labels.
    title
        Prefix of the panel titles (e.g. the direction).

    Returns
    -------
    The figure. Each panel's title counts the features on which ``reference`` is higher.
    """
    from matplotlib.figure import Figure

    if reference not in scores:
        raise ValueError(f"`reference` {reference!r} is not in `scores` ({list(scores)}).")
    others = [name for name in scores if name != reference]
    if not others:
        raise ValueError("`scores` needs at least one method besides `reference`.")
    fig = Figure(figsize=(4.4 * len(others), 4.3))
    axes = fig.subplots(1, len(others), squeeze=False)[0]
    y = np.asarray(scores[reference], dtype=float)
    prefix = f"{title}: " if title else ""
    for ax, name in zip(axes, others, strict=True):
        x = np.asarray(scores[name], dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=4, alpha=0.4, linewidths=0, color="#2a6f97", rasterized=True)
        low = float(min(x[ok].min(initial=0.0), y[ok].min(initial=0.0)))
        high = float(max(x[ok].max(initial=1.0), y[ok].max(initial=1.0)))
        ax.plot([low, high], [low, high], color="grey", lw=1, ls="--")
        ax.set_xlabel(f"{name}: {metric}")
        ax.set_ylabel(f"{reference}: {metric}")
        wins = int((y[ok] > x[ok]).sum())
        ax.set_title(f"{prefix}{reference} higher on {wins:,} of {int(ok.sum()):,}", fontsize=9)
    fig.tight_layout()
    return fig
