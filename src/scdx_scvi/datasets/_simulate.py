"""Simulated paired single-cell multi-omics with planted gene–peak regulatory links."""

from __future__ import annotations

import mudata as md
import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scipy.special import expit, logsumexp

#: Elements of one dense working block (cells × features) while counts are drawn.
_BLOCK_ELEMENTS = 2**21
#: Dimension of the latent programs.
_N_PROGRAMS = 10
#: Standard deviation of a cell's latent state around its cell type's program.
_WITHIN_TYPE_SD = 0.4
#: Largest distance (bp) between a gene's TSS and the centre of a peak linked to it.
_LINK_WINDOW = 100_000
#: Peak classes: always open, open in a subset of cell types, rarely open.
_PEAK_CLASSES = ("constitutive", "cell_type_specific", "background")
_PEAK_CLASS_P = (0.15, 0.45, 0.40)
#: Probability that a closed peak yields a fragment, relative to an open one (off-target reads).
_ATAC_BACKGROUND = 0.01


def simulate_multiome(
    n_cells: int = 2000,
    n_genes: int = 1000,
    n_peaks: int = 5000,
    n_proteins: int = 0,
    n_cell_types: int = 6,
    n_batches: int = 2,
    n_links: int | None = None,
    seed: int | None = 0,
    rna_library_size: float | None = None,
    atac_capture: float = 0.12,
    batch_effect: float = 0.3,
    link_effect: float = 1.0,
) -> tuple[MuData, pd.DataFrame]:
    r"""Simulate paired RNA + ATAC (+ protein) counts with known gene–peak regulatory links.

    Cells fall into cell types of unequal sizes, each with its own latent program, and into
    batches that differ by a gene-level batch effect and by their sequencing depths. RNA counts
    are negative binomial with 10x-like sparsity, ATAC counts are mostly 0/1 with a few percent
    of non-zero entries, and, when ``n_proteins > 0``, ADT counts are negative binomial with a
    background component. A set of (gene, peak) pairs is planted in which the peak's chromatin
    state raises the gene's expression; it is returned as ground truth for link-inference
    methods. Counts are drawn block by block and stored sparse, so memory grows with the number
    of non-zero counts, not with ``n_cells × n_peaks``.

    Parameters
    ----------
    n_cells
        Number of cells.
    n_genes
        Number of genes (``rna`` features).
    n_peaks
        Number of peaks (``atac`` features).
    n_proteins
        Number of proteins (ADT features); ``0`` leaves out the ``protein`` modality.
    n_cell_types
        Number of cell types.
    n_batches
        Number of batches.
    n_links
        Number of planted gene–peak links. ``None`` plants up to
        ``min(n_genes // 5, n_peaks // 10)`` (fewer if the genome layout has too few peaks near
        genes); an explicit number that cannot be planted raises a ``ValueError``.
    seed
        Seed of the :func:`numpy.random.default_rng` generator that draws everything; the
        same seed and arguments give identical data (``None``: fresh, unreproducible draws).
    rna_library_size
        Median total RNA count per cell (before the per-batch depth factors). ``None`` uses
        ``0.4 * n_genes``, which keeps about 90 % of RNA entries zero whatever ``n_genes``.
    atac_capture
        Median per-cell probability that an accessible peak copy yields a fragment (the
        ATAC depth, before the per-batch depth factors); the density of the ATAC matrix is
        roughly ``0.55 * atac_capture``.
    batch_effect
        Standard deviation of the per-batch log scaling factor of each gene (and of the
        per-batch shift of each peak's accessibility logit, at half that size).
    link_effect
        Median effect of an open linked peak on its gene's log mean expression.

    Returns
    -------
    mdata
        MuData with modalities ``"rna"`` (``gene_0``, ...), ``"atac"`` (``chr1:start-end``,
        ...) and, if ``n_proteins > 0``, ``"protein"`` (``protein_0``, ...). Raw counts are
        ``float32`` CSR matrices in ``.X`` and (as a copy) in ``layers["counts"]``.
        ``mdata.obs`` holds the categorical ``"cell_type"`` and ``"batch"``;
        ``mdata.obsm["latent"]`` the true latent state of each cell. Gene and peak ``var``
        hold genomic coordinates (``chrom``, ``start``, ``end``), peak ``var["peak_class"]``
        the accessibility class, and protein ``var["gene"]`` the gene a protein follows
        (empty if none).
    links
        One row per planted link with columns ``gene`` and ``peak`` (names in
        ``mdata["rna"].var_names`` and ``mdata["atac"].var_names``) and ``effect`` (the
        increase of the gene's log mean expression when the peak is open).

    Model
    -----
    Cell :math:`i` has cell type :math:`k_i \sim \mathrm{Cat}(\pi)` with
    :math:`\pi \sim \mathrm{Dirichlet}(2)` (unequal sizes), batch :math:`b_i` drawn uniformly,
    and latent state :math:`z_i = m_{k_i} + 0.4\,u_i` where :math:`m_k \sim N(0, I_{10})` is
    the cell type's latent program and :math:`u_i \sim N(0, I_{10})` its own variation.
    Genes lie along up to 22 chromosomes; half of the peaks lie near a gene's TSS (Laplace
    offset, scale 20 kb), the others anywhere, and peaks do not overlap.

    *Chromatin.* Each peak :math:`p` is constitutive (open in every type), cell-type specific
    (open in a random subset of types) or background (rarely open), which sets a per-type
    logit :math:`A_{kp}`. The peak is open in cell :math:`i`,
    :math:`o_{ip} \sim \mathrm{Bernoulli}(\sigma(A_{k_i p} + \delta_{b_i p} + u_i^\top V_p))`,
    with a batch shift :math:`\delta_{bp}` and within-type variation :math:`V_p`. The ATAC
    count is :math:`y_{ip} \sim \mathrm{Binomial}(2, c_i)` if the peak is open (two copies of
    the genome) and :math:`\mathrm{Binomial}(2, 0.01\,c_i)` if closed, where the per-cell
    capture (fragment depth) :math:`c_i` is log-normal with a batch-specific median and
    spread (batch medians spread evenly over a factor of about 1.6, in a random order).

    *Expression.* Gene :math:`g` has a baseline :math:`\beta_g`, loadings :math:`W_g` on a
    few latent programs, a per-batch scaling factor :math:`s_{bg}` (log-normal, standard
    deviation ``batch_effect``) and, for each planted link :math:`(g, p)`, an effect
    :math:`e_{gp} > 0`:

    .. math::

        \eta_{ig} = \beta_g + z_i^\top W_g + \textstyle\sum_{p \to g} e_{gp}\, o_{ip}
        + \log s_{b_i g}, \qquad
        \mu_{ig} = \ell_i \, \mathrm{softmax}_g(\eta_i),

    with a log-normal library size :math:`\ell_i` whose median (over a factor of about 1.6
    across batches) and spread depend on the batch. Counts are gamma-Poisson (negative
    binomial) with gene-specific inverse dispersion :math:`\theta_g`:
    :math:`\lambda_{ig} \sim \mathrm{Gamma}(\theta_g, \mu_{ig}/\theta_g)`,
    :math:`x_{ig} \sim \mathrm{Poisson}(\lambda_{ig})`. Linked peaks lie within 100 kb of
    their gene's TSS and are cell-type specific, so a linked gene is higher in the cell types
    (and in the cells) where its peaks are open.

    *Protein.* Half of the proteins follow a gene (foreground
    :math:`\exp(\tau_j + \eta_{ig} - \beta_g - \log s_{b_i g})`), the others load on the
    latent programs (:math:`\exp(\tau_j + z_i^\top U_j)`); the mean count is
    :math:`r_i (a_{b_i} \nu_j + \text{foreground})` with a per-cell depth :math:`r_i`, a
    per-protein background :math:`\nu_j` (ambient antibodies) scaled per batch by
    :math:`a_b`, and counts are negative binomial.

    Every cell gets at least one count in each modality: a cell whose draw is empty receives
    one count in a feature drawn from its own mean profile.

    Examples
    --------
    >>> import scdx_scvi
    >>> mdata, links = scdx_scvi.datasets.simulate_multiome(n_cells=500, seed=1)
    >>> scdx_scvi.SCDX.setup_mudata(mdata, labels_key="cell_type", batch_key="batch")
    """
    _check_sizes(n_cells, n_genes, n_peaks, n_proteins, n_cell_types, n_batches, n_links)
    if not 0 < atac_capture <= 1:
        raise ValueError(f"`atac_capture` must be in (0, 1], got {atac_capture}.")
    for name, value in {"batch_effect": batch_effect, "link_effect": link_effect}.items():
        if value < 0:
            raise ValueError(f"`{name}` must be non-negative, got {value}.")
    if rna_library_size is None:
        rna_library_size = 0.4 * n_genes
    elif rna_library_size <= 0:
        raise ValueError(f"`rna_library_size` must be positive, got {rna_library_size}.")
    rng = np.random.default_rng(seed)

    # Cells: type, batch, latent state.
    proportions = rng.dirichlet(np.full(n_cell_types, 2.0))
    cell_type = rng.choice(n_cell_types, size=n_cells, p=proportions)
    batch = rng.integers(n_batches, size=n_cells)
    programs = rng.normal(size=(n_cell_types, _N_PROGRAMS))
    u = rng.normal(size=(n_cells, _N_PROGRAMS))
    z = programs[cell_type] + _WITHIN_TYPE_SD * u

    # Genome layout, then features.
    genes, peaks = _genome_layout(rng, n_genes, n_peaks)
    atac = _atac_parameters(rng, n_peaks, n_cell_types, n_batches, batch_effect)
    peaks["peak_class"] = pd.Categorical.from_codes(atac["peak_class"], _PEAK_CLASSES)
    rna = _rna_parameters(rng, n_genes, n_batches, batch_effect)
    links = _plant_links(rng, genes, peaks, atac["peak_class"], n_links, link_effect)
    link_peaks, link_matrix = _link_matrix(links, genes.index, peaks.index)

    # Per-cell depths, with batch-specific medians and spreads.
    library = _lognormal_depth(rng, batch, n_batches, rna_library_size, (0.3, 0.6))
    capture = np.minimum(_lognormal_depth(rng, batch, n_batches, atac_capture, (0.25, 0.45)), 0.9)
    protein = None
    if n_proteins:
        protein = _protein_parameters(rng, n_proteins, n_genes, n_batches, rna)
        protein_depth = _lognormal_depth(rng, batch, n_batches, 1.0, (0.3, 0.5))

    blocks = {"rna": [], "atac": [], "protein": []}
    n_rows = max(1, _BLOCK_ELEMENTS // max(n_genes, n_peaks, n_proteins))
    for start in range(0, n_cells, n_rows):
        rows = slice(start, min(start + n_rows, n_cells))
        y, is_open = _draw_atac(rng, atac, cell_type[rows], batch[rows], u[rows], capture[rows])
        link_term = (link_matrix.T @ is_open[:, link_peaks].T.astype(np.float64)).T
        eta_bio = rna["baseline"] + z[rows] @ rna["loadings"] + link_term
        x = _draw_rna(rng, rna, eta_bio, batch[rows], library[rows])
        blocks["atac"].append(y)
        blocks["rna"].append(x)
        if protein is not None:
            w = _draw_protein(rng, protein, rna, eta_bio, z[rows], batch[rows], protein_depth[rows])
            blocks["protein"].append(w)

    obs_names = pd.Index([f"cell_{i}" for i in range(n_cells)])
    mods = {
        "rna": _counts_adata(blocks["rna"], obs_names, genes),
        "atac": _counts_adata(blocks["atac"], obs_names, peaks),
    }
    if protein is not None:
        var = pd.DataFrame(
            {
                "gene": [genes.index[g] if g >= 0 else "" for g in protein["gene"]],
            },
            index=pd.Index([f"protein_{j}" for j in range(n_proteins)]),
        )
        mods["protein"] = _counts_adata(blocks["protein"], obs_names, var)
    with md.set_options(pull_on_update=False):  # the modalities' obs have no columns
        mdata = MuData(mods)
    mdata.obs["cell_type"] = pd.Categorical.from_codes(
        cell_type, [f"type_{k}" for k in range(n_cell_types)]
    )
    mdata.obs["batch"] = pd.Categorical.from_codes(batch, [f"batch_{b}" for b in range(n_batches)])
    mdata.obsm["latent"] = z.astype(np.float32)
    return mdata, links


def _check_sizes(n_cells, n_genes, n_peaks, n_proteins, n_cell_types, n_batches, n_links):
    sizes = {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "n_peaks": n_peaks,
        "n_cell_types": n_cell_types,
        "n_batches": n_batches,
    }
    for name, value in sizes.items():
        if int(value) != value or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    for name, value in {"n_proteins": n_proteins, "n_links": n_links}.items():
        if value is not None and (int(value) != value or value < 0):
            raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")


def _genome_layout(
    rng: np.random.Generator, n_genes: int, n_peaks: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Place genes along chromosomes, and peaks near genes (half of them) or anywhere."""
    n_chrom = int(np.clip(n_genes // 50, 1, 22))
    gene_chrom = np.sort(rng.integers(n_chrom, size=n_genes))
    gene_start = np.empty(n_genes, dtype=np.int64)
    chrom_end = np.empty(n_chrom, dtype=np.int64)
    for c in range(n_chrom):
        idx = np.flatnonzero(gene_chrom == c)
        gaps = rng.exponential(200_000, size=idx.size).astype(np.int64) + 10_000
        gene_start[idx] = 1_000_000 + np.cumsum(gaps)
        chrom_end[c] = (gene_start[idx].max() if idx.size else 1_000_000) + 1_000_000
    gene_length = np.clip(rng.lognormal(np.log(20_000), 1.0, size=n_genes), 1_000, 500_000)
    genes = pd.DataFrame(
        {
            "chrom": [f"chr{c + 1}" for c in gene_chrom],
            "start": gene_start,
            "end": gene_start + gene_length.astype(np.int64),
        },
        index=pd.Index([f"gene_{g}" for g in range(n_genes)]),
    )

    near = rng.random(n_peaks) < 0.5
    anchor = rng.integers(n_genes, size=n_peaks)
    peak_chrom = np.where(
        near, gene_chrom[anchor], rng.choice(n_chrom, size=n_peaks, p=chrom_end / chrom_end.sum())
    )
    offset = rng.laplace(0.0, 20_000, size=n_peaks)
    anywhere = rng.random(n_peaks) * chrom_end[peak_chrom]
    centre = np.where(near, gene_start[anchor] + offset, anywhere)
    width = rng.integers(200, 1500, size=n_peaks)
    peak_start = np.maximum(centre - width / 2, 1).astype(np.int64)
    order = np.lexsort((peak_start, peak_chrom))
    peak_chrom, peak_start, width = peak_chrom[order], peak_start[order], width[order]
    for c in range(n_chrom):
        # Shift peaks right where needed so that they do not overlap (and names are unique).
        idx = np.flatnonzero(peak_chrom == c)
        step = width[idx] + 50
        before = np.concatenate(([0], np.cumsum(step)[:-1]))
        peak_start[idx] = np.maximum.accumulate(peak_start[idx] - before) + before
    peak_end = peak_start + width
    names = [
        f"chr{c + 1}:{s}-{e}" for c, s, e in zip(peak_chrom, peak_start, peak_end, strict=True)
    ]
    peaks = pd.DataFrame(
        {"chrom": [f"chr{c + 1}" for c in peak_chrom], "start": peak_start, "end": peak_end},
        index=pd.Index(names),
    )
    return genes, peaks


def _atac_parameters(rng, n_peaks, n_cell_types, n_batches, batch_effect) -> dict:
    peak_class = rng.choice(len(_PEAK_CLASSES), size=n_peaks, p=_PEAK_CLASS_P)
    logits = np.empty((n_cell_types, n_peaks))
    constitutive, specific, background = (peak_class == c for c in range(3))
    logits[:, constitutive] = rng.normal(2.0, 0.5, size=constitutive.sum()) + rng.normal(
        0.0, 0.3, size=(n_cell_types, constitutive.sum())
    )
    open_in = rng.random((n_cell_types, specific.sum())) < 0.3
    open_in[rng.integers(n_cell_types, size=specific.sum()), np.arange(specific.sum())] = True
    logits[:, specific] = np.where(
        open_in,
        rng.normal(1.0, 0.5, size=open_in.shape),
        rng.normal(-3.5, 0.5, size=open_in.shape),
    )
    logits[:, background] = rng.normal(-4.0, 0.5, size=(n_cell_types, background.sum()))
    return {
        "peak_class": peak_class,
        "logits": logits,
        "batch_shift": rng.normal(0.0, batch_effect / 2, size=(n_batches, n_peaks)),
        "variation": rng.normal(0.0, 0.5 / np.sqrt(_N_PROGRAMS), size=(_N_PROGRAMS, n_peaks)),
    }


def _rna_parameters(rng, n_genes, n_batches, batch_effect) -> dict:
    # Each gene responds to about two programs; some (housekeeping) to none.
    loadings = rng.normal(size=(_N_PROGRAMS, n_genes)) * (
        rng.random((_N_PROGRAMS, n_genes)) < 2 / _N_PROGRAMS
    )
    return {
        "baseline": rng.normal(0.0, 1.5, size=n_genes),
        "loadings": loadings,
        "log_batch_scale": rng.normal(0.0, batch_effect, size=(n_batches, n_genes)),
        "theta": np.exp(rng.normal(np.log(3.0), 0.7, size=n_genes)),
    }


def _protein_parameters(rng, n_proteins, n_genes, n_batches, rna) -> dict:
    # Half of the proteins follow a gene, chosen among the variable, well-expressed genes.
    n_tied = min((n_proteins + 1) // 2, n_genes)
    variable = np.abs(rna["loadings"]).sum(axis=0) > 0
    expressed = rna["baseline"] >= np.median(rna["baseline"])
    pool = np.flatnonzero(variable & expressed)
    pool = pool if pool.size >= n_tied else np.arange(n_genes)
    gene = np.full(n_proteins, -1)
    gene[:n_tied] = rng.choice(pool, size=n_tied, replace=False)
    loadings = rng.normal(size=(_N_PROGRAMS, n_proteins)) * (
        rng.random((_N_PROGRAMS, n_proteins)) < 2 / _N_PROGRAMS
    )
    return {
        "gene": gene,
        "loadings": loadings,
        "tau": rng.normal(np.log(30.0), 1.0, size=n_proteins),
        "background": np.exp(rng.normal(np.log(10.0), 0.5, size=n_proteins)),
        "batch_scale": np.exp(rng.normal(0.0, 0.3, size=n_batches)),
        "theta": np.exp(rng.normal(np.log(5.0), 0.3, size=n_proteins)),
    }


def _lognormal_depth(rng, batch, n_batches, median, sd_range) -> np.ndarray:
    """Per-cell log-normal depth whose median and log-spread depend on the batch.

    The batch medians are spread evenly over a factor of about 1.6 (in a random order), so
    batches always differ in depth.
    """
    offsets = rng.permutation(np.linspace(-0.25, 0.25, n_batches)) if n_batches > 1 else 0.0
    batch_median = median * np.exp(offsets + rng.normal(0.0, 0.05, size=n_batches))
    batch_sd = rng.uniform(*sd_range, size=n_batches)
    return batch_median[batch] * np.exp(batch_sd[batch] * rng.normal(size=batch.size))


def _plant_links(rng, genes, peaks, peak_class, n_links, link_effect) -> pd.DataFrame:
    """Link genes to cell-type-specific peaks within ``_LINK_WINDOW`` of their TSS."""
    target = min(len(genes) // 5, len(peaks) // 10) if n_links is None else n_links
    specific = np.flatnonzero(peak_class == _PEAK_CLASSES.index("cell_type_specific"))
    chrom = peaks["chrom"].to_numpy()[specific]
    centre = (peaks["start"].to_numpy()[specific] + peaks["end"].to_numpy()[specific]) // 2
    # Peaks are sorted by position on each chromosome and do not overlap: centres are sorted.
    by_chrom = {c: (specific[chrom == c], centre[chrom == c]) for c in np.unique(chrom)}
    gene_idx, peak_idx = [], []
    for g in rng.permutation(len(genes)):
        if len(peak_idx) >= target:
            break
        tss = genes["start"].iat[g]
        candidates, centres = by_chrom.get(genes["chrom"].iat[g], (specific[:0], centre[:0]))
        lo, hi = np.searchsorted(centres, [tss - _LINK_WINDOW, tss + _LINK_WINDOW + 1])
        candidates = candidates[lo:hi]
        if not candidates.size:
            continue
        k = min(candidates.size, 1 + rng.poisson(0.7), target - len(peak_idx))
        chosen = np.sort(rng.choice(candidates, size=k, replace=False))
        gene_idx.extend([g] * k)
        peak_idx.extend(chosen.tolist())
    if n_links is not None and len(peak_idx) < n_links:
        raise ValueError(
            f"Could plant only {len(peak_idx)} of n_links={n_links} gene–peak links (a link "
            f"joins a gene to a cell-type-specific peak within {_LINK_WINDOW // 1000} kb of its "
            "TSS). Lower `n_links`, or raise `n_peaks` or `n_genes`."
        )
    order = np.lexsort((peak_idx, gene_idx))
    gene_idx, peak_idx = (
        np.asarray(gene_idx, dtype=int)[order],
        np.asarray(peak_idx, dtype=int)[order],
    )
    return pd.DataFrame(
        {
            "gene": genes.index[gene_idx],
            "peak": peaks.index[peak_idx],
            "effect": link_effect * np.exp(rng.normal(0.0, 0.3, size=peak_idx.size)),
        }
    )


def _link_matrix(links, gene_names, peak_names) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Return the linked peaks and the (linked peaks × genes) matrix of effects."""
    peak_pos = peak_names.get_indexer(links["peak"])
    gene_pos = gene_names.get_indexer(links["gene"])
    link_peaks, rows = np.unique(peak_pos, return_inverse=True)
    matrix = sparse.csr_matrix(
        (links["effect"].to_numpy(), (rows, gene_pos)), shape=(link_peaks.size, len(gene_names))
    )
    return link_peaks, matrix


def _draw_atac(rng, atac, cell_type, batch, u, capture) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Draw the chromatin state and the ATAC counts of a block of cells."""
    logit = atac["logits"][cell_type] + atac["batch_shift"][batch] + u @ atac["variation"]
    accessibility = expit(logit)
    is_open = rng.random(accessibility.shape) < accessibility
    c = capture[:, None]
    y = rng.binomial(2, np.where(is_open, c, _ATAC_BACKGROUND * c))
    _fill_empty_rows(rng, y, accessibility)
    return sparse.csr_matrix(y.astype(np.float32)), is_open


def _draw_rna(rng, rna, eta_bio, batch, library) -> sparse.csr_matrix:
    """Draw the RNA counts of a block of cells from their log rates before batch effects."""
    eta = eta_bio + rna["log_batch_scale"][batch]
    mean = library[:, None] * np.exp(eta - logsumexp(eta, axis=1, keepdims=True))
    x = _negative_binomial(rng, mean, rna["theta"])
    _fill_empty_rows(rng, x, mean)
    return sparse.csr_matrix(x.astype(np.float32))


def _draw_protein(rng, protein, rna, eta_bio, z, batch, depth) -> sparse.csr_matrix:
    """Draw the ADT counts of a block of cells: background plus foreground."""
    tied = protein["gene"] >= 0
    genes_of = protein["gene"][tied]
    activity = np.empty((z.shape[0], tied.size))
    activity[:, tied] = eta_bio[:, genes_of] - rna["baseline"][genes_of]
    activity[:, ~tied] = z @ protein["loadings"][:, ~tied]
    background = protein["background"] * protein["batch_scale"][batch, None]
    mean = depth[:, None] * (background + np.exp(protein["tau"] + activity))
    w = _negative_binomial(rng, mean, protein["theta"])
    _fill_empty_rows(rng, w, mean)
    return sparse.csr_matrix(w.astype(np.float32))


def _negative_binomial(rng, mean, theta) -> np.ndarray:
    """Gamma-Poisson draws with the given means and inverse dispersions."""
    return rng.poisson(rng.gamma(theta, mean / theta))


def _fill_empty_rows(rng, counts, weights) -> None:
    """Give each all-zero row of ``counts`` one count, in a feature drawn ∝ its ``weights``."""
    for row in np.flatnonzero(counts.sum(axis=1) == 0):
        p = weights[row] / weights[row].sum()
        counts[row, rng.choice(p.size, p=p)] = 1


def _counts_adata(blocks, obs_names, var) -> AnnData:
    x = sparse.vstack(blocks, format="csr")
    return AnnData(X=x, obs=pd.DataFrame(index=obs_names), var=var, layers={"counts": x.copy()})
