"""Scores of regulatory links between the features of two modalities (e.g. peaks and genes).

Every scorer scores the same candidate pairs, given as positions ``target_idx`` (e.g. genes)
and ``source_idx`` (e.g. peaks) into the two modalities' features, on the cells it is given:

* :func:`gradient_rows`: the trained model's translation source -> target, differentiated
  with respect to the source values (model-based), and
* :func:`correlation_rows`: Pearson correlation across cells, both z-scored per gene against
  background features matched for detection rate and width (:func:`background_scores`, as
  Signac's ``LinkPeaks``);
* :func:`attention_link_scores`: the reference scDiffusion-X pipeline (Dual Cross Attention
  of the middle block, then gradients from the selected hidden units to the inputs);
* :func:`distance_link_scores`: closer to the TSS is a stronger link.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from torch import Tensor

from scdx_scvi.metrics import log_cp10k

#: Elements (float32) of the largest per-chunk gradient tensor of :func:`gradient_rows`.
GRADIENT_BUDGET = 2**25


def _encoder_input(likelihood, x: Tensor, shift: Tensor) -> Tensor:
    """Return the encoder input for raw values ``x`` shifted by ``shift`` (differentiable).

    ATAC encoders see binarised accessibility, so the shift is added after binarising (the
    derivative is with respect to accessibility); counts are shifted before the encoder's
    transform, with the observed library size.
    """
    if likelihood.binary:
        return likelihood.encode_input(x, None) + shift
    return likelihood.encode_input(x + shift, likelihood.library(x))


def _covariates(module, n: int, device) -> tuple[Tensor, ...]:
    """Batch covariate of the autoencoder: the first batch, as translation without ``batch``."""
    if not module.use_batch:
        return ()
    return (torch.zeros((n, 1), dtype=torch.long, device=device),)


def translated_logits(
    module, source: str, z_source: Tensor, target: str, clip_x0: float | None
) -> Tensor:
    r"""Return the target's decoder logits given the source latent (differentiable).

    The learned translation with the conditional-mean estimate (what
    ``get_translated_modality(method="learned", sampler="mean")`` computes, see
    :class:`~scdx_scvi.diffusion.MeanSampler`): one evaluation of the EMA denoiser with the
    clean source at ``t = 0``, every other modality at ``x_{T-1} = 0`` and the null label and
    batch, :math:`\hat x_0 = -\sqrt{1-\bar\alpha_{T-1}}\,\hat\varepsilon / \sqrt{\bar\alpha_{T-1}}`.
    """
    diffusion = module.diffusion
    n, device = z_source.shape[0], z_source.device
    last = len(diffusion.schedule) - 1
    x, t = {}, {}
    for m in diffusion.modalities:
        if m == source:
            x[m], s = diffusion.condition_input(m, diffusion.scale({m: z_source})[m])
            t[m] = torch.full((n,), s, dtype=torch.long, device=device)
        else:
            x[m] = torch.zeros((n, diffusion.denoiser.latent_dims[m]), device=device)
            t[m] = torch.full((n,), last, dtype=torch.long, device=device)
    eps = diffusion.labelled_denoiser()(x, t, None)[target]
    ab = float(diffusion.schedule.alphas_cumprod[last])
    x0 = -math.sqrt(1.0 - ab) * eps / math.sqrt(ab)
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
    z_target = diffusion.unscale({target: x0})[target]
    return module.decode_logits({target: z_target}, *_covariates(module, n, device))[target]


def gradient_rows(
    module,
    x_source: sparse.csr_matrix,
    source: str,
    target: str,
    clip_x0: float | None,
    budget: int = GRADIENT_BUDGET,
) -> Callable[[np.ndarray], np.ndarray]:
    r"""Mean over cells of the derivative of the translated target with respect to the source.

    Returns a function that maps target features ``genes`` to the ``(n_source, len(genes))``
    matrix :math:`\frac{1}{n}\sum_c \partial \log \hat y_{cg} / \partial a_{cp}`, where
    :math:`\hat y_c` is the model's translation of cell ``c``'s source values :math:`a_c` (see
    :func:`translated_logits`; proportions for counts, probabilities for ATAC) and
    :math:`a_{cp}` the value the source encoder sees (binary accessibility for ATAC): the
    first-order effect of opening peak ``p`` on the log expression of gene ``g`` (positive:
    opening it raises the gene).

    Each target feature costs one backward pass over the cells (batched over the features of
    a call); cells are processed in chunks so that the gradient tensor (features x cells x
    source features) stays within ``budget`` elements. Cost: about ``n_targets x n_cells``
    single-cell backward passes, dominated by the first encoder layer (``n_source x width``
    multiply-adds each); memory: ``budget`` floats plus one chunk's activations.
    """
    device = module.device
    lik = module.likelihoods[source]
    target_lik = module.likelihoods[target]
    n_cells, n_source = x_source.shape

    def rows(genes: np.ndarray) -> np.ndarray:
        k = len(genes)
        chunk = max(1, budget // (k * n_source))
        cotangents = torch.eye(k, device=device)
        columns = torch.as_tensor(genes, device=device)
        total = torch.zeros((k, n_source), dtype=torch.float64, device=device)
        for first in range(0, n_cells, chunk):
            x = torch.as_tensor(x_source[first : first + chunk].toarray(), device=device)
            shift = torch.zeros((1, n_source), device=device, requires_grad=True)
            with torch.enable_grad():
                encoded = _encoder_input(lik, x, shift)
                z = module.encoders[source](encoded, *_covariates(module, x.shape[0], device))
                logits = translated_logits(module, source, z, target, clip_x0)
                out = target_lik.log_normalized(logits)[:, columns].sum(0)
                (grad,) = torch.autograd.grad(out, shift, cotangents, is_grads_batched=True)
            total += grad[:, 0].double()
        return (total / n_cells).T.cpu().numpy()

    return rows


def attention_link_scores(
    module,
    x: Mapping[str, sparse.csr_matrix],
    source: str,
    target: str,
    target_idx: np.ndarray,
    source_idx: np.ndarray,
    labels: np.ndarray | None,
    seed: int,
    n_positions: int = 15,
    n_top_target: int = 100,
    n_top_source: int = 200,
    timestep: int = 1,
    site: str = "middle",
) -> np.ndarray:
    r"""Score pairs by the reference's pipeline (``regulatory_multi_diff.ipynb``) on the cells.

    1. Encode every modality, scale, and noise the latents at ``t = timestep`` (1) with **one**
       Gaussian draw (``seed``); run the raw (non-EMA) denoiser, as the reference does, with
       the cells' labels and keep the cross-attention of ``site`` (``"middle"``: DCA #2).
    2. Cross map :math:`M = \bar S_{src \to tgt} + \bar S_{tgt \to src}^\top` (means over the
       cells; rows: source hidden units, columns: target hidden units) and its ``n_positions``
       largest entries.
    3. For each selected hidden unit ``e`` of a stream, the gradient of the cells' mean of
       that unit (the block's input) with respect to the modality's input values; features are
       ranked by :math:`\mathrm{mean}_c |\partial / \partial x_{cf}|`, keeping those with a
       count sum above ``0.2 n`` (counts) or ``0.05 n`` (accessibility), and the top
       ``n_top_target`` (genes) or ``n_top_source`` (peaks) are kept.
    4. Every pair in (top target features of the position's target unit) x (top source
       features of its source unit) scores the position's value of ``M``; a pair selected by
       several positions gets the sum. The reference's distance filter (120 kb) is applied by
       the caller.

    Returns
    -------
    The score of each candidate pair (0 for pairs the pipeline does not select).
    """
    diffusion = module.diffusion
    device = module.device
    network = diffusion.denoiser
    n = next(iter(x.values())).shape[0]
    generator = torch.Generator(device=device).manual_seed(int(seed))
    shifts, z = {}, {}
    with torch.enable_grad():
        for m in diffusion.modalities:
            values = torch.as_tensor(x[m].toarray(), device=device)
            shifts[m] = torch.zeros_like(values, requires_grad=True)
            encoded = _encoder_input(module.likelihoods[m], values, shifts[m])
            z[m] = module.encoders[m](encoded, *_covariates(module, n, device))
        scaled = diffusion.scale(z)
        t = torch.full((n,), int(timestep), dtype=torch.long, device=device)
        noisy = {
            m: diffusion.schedule.q_sample(
                v, t, torch.randn(v.shape, generator=generator, device=device)
            )
            for m, v in scaled.items()
        }
        codes = None
        if labels is not None and diffusion.n_labels:
            codes = torch.as_tensor(labels, dtype=torch.long, device=device)
        _, sites = network(noisy, t, labels=codes, return_attention=True)
        found = [s for s in sites if s["site"] == site]
        if not found or not found[0]["attention"]:
            raise ValueError(
                f"The denoiser has no cross-attention at site {site!r} (cross_attention="
                f"{network.cross_attention_type!r}); the attention method needs one."
            )
        block = found[0]
        maps = block["attention"]
        cross = maps[source][target].mean(0) + maps[target][source].mean(0).T
        values, flat = torch.topk(cross.detach().flatten(), min(n_positions, cross.numel()))
        units = {
            source: (flat // cross.shape[1]).cpu().numpy(),
            target: (flat % cross.shape[1]).cpu().numpy(),
        }
        top = {source: {}, target: {}}
        n_top = {source: n_top_source, target: n_top_target}
        for m in (source, target):
            # the reference's thresholds on the count sum (accessibility is binary)
            binary = module.likelihoods[m].binary
            counts = np.asarray(((x[m] > 0) if binary else x[m]).sum(axis=0)).ravel()
            keep = counts > (0.05 if binary else 0.2) * n
            for unit in np.unique(units[m]):
                (grad,) = torch.autograd.grad(
                    block["inputs"][m][:, unit].mean(), shifts[m], retain_graph=True
                )
                saliency = grad.abs().mean(0).cpu().numpy() * keep
                order = np.argsort(-saliency, kind="stable")[: n_top[m]]
                top[m][unit] = order[saliency[order] > 0]
    scores = np.zeros(len(target_idx))
    for value, s_unit, t_unit in zip(
        values.cpu().numpy(), units[source], units[target], strict=True
    ):
        hit = np.isin(target_idx, top[target][t_unit]) & np.isin(source_idx, top[source][s_unit])
        scores[hit] += float(value)
    return scores


def _column_moments(values: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation of each column."""
    n = values.shape[0]
    mean = np.asarray(values.mean(axis=0)).ravel()
    sq = np.asarray(values.multiply(values).sum(axis=0)).ravel() / n
    return mean, np.sqrt(np.maximum(sq - mean**2, 0.0))


def correlation_values(x: sparse.spmatrix, binary: bool) -> sparse.csr_matrix:
    """Values correlated by the correlation baseline: binarised (ATAC) or log1p(CP10k)."""
    x = sparse.csr_matrix(x)
    if binary:
        out = x.astype(np.float64)
        out.data = (out.data > 0).astype(np.float64)
        out.eliminate_zeros()
        return out
    return log_cp10k(x)


def correlation_rows(
    target_values: sparse.csr_matrix, source_values: sparse.csr_matrix
) -> Callable[[np.ndarray], np.ndarray]:
    """Pearson correlation across cells of every source feature with given target features.

    Returns a function that maps target features ``genes`` to the ``(n_source, len(genes))``
    correlation matrix (0 where a feature is constant), computed from sparse products.
    """
    n = target_values.shape[0]
    source_mean, source_sd = _column_moments(source_values)
    target_mean, target_sd = _column_moments(target_values)
    source_t = source_values.T.tocsr()

    def rows(genes: np.ndarray) -> np.ndarray:
        cross = np.asarray(source_t @ target_values[:, genes].toarray()) / n
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (cross - np.outer(source_mean, target_mean[genes])) / np.outer(
                source_sd, target_sd[genes]
            )
        return np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)

    return rows


def background_scores(
    rows: Callable[[np.ndarray], np.ndarray],
    target_idx: np.ndarray,
    source_idx: np.ndarray,
    source_stats: pd.DataFrame,
    target_chrom: np.ndarray | None,
    n_background: int,
    seed: int,
    target_chunk: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Association of each pair, and its z-score against matched background source features.

    ``rows(genes)`` gives the association of every source feature with the target features
    ``genes`` (see :func:`correlation_rows`, :func:`gradient_rows`). For each target feature
    (gene), ``n_background`` source features (peaks) are drawn: a random candidate of the gene,
    then a random feature of the same stratum of ``source_stats["stratum"]`` (detection rate
    decile x width tercile), never a candidate of the gene and, when chromosomes are known
    (``source_stats["chrom"]``), on another chromosome than the gene (unless fewer than a
    quarter of the draws are, e.g. with one chromosome: then on any). The z-score is
    ``(a - mean(a_background)) / sd(a_background)``, as Signac's ``LinkPeaks`` (which also
    matches GC content, not available without a genome sequence).

    Returns
    -------
    ``(association, z)`` for each pair (z is 0 where the background has no spread).
    """
    rng = np.random.default_rng(seed)
    min_trans = max(2, n_background // 4)
    stratum = source_stats["stratum"].to_numpy()
    chrom = source_stats["chrom"].to_numpy() if "chrom" in source_stats else None
    pools = {s: np.flatnonzero(stratum == s) for s in np.unique(stratum)}
    values = np.zeros(len(target_idx))
    z = np.zeros(len(target_idx))
    order = np.argsort(target_idx, kind="stable")
    genes_all, first = np.unique(target_idx[order], return_index=True)
    groups = np.split(order, first[1:])
    for start in range(0, len(groups), target_chunk):
        genes = genes_all[start : start + target_chunk]
        block = rows(genes)
        for j, pairs in enumerate(groups[start : start + target_chunk]):
            candidates = source_idx[pairs]
            values[pairs] = block[candidates, j]
            drawn = stratum[rng.choice(candidates, size=n_background)]
            background = np.array([pools[s][rng.integers(len(pools[s]))] for s in drawn])
            keep = ~np.isin(background, candidates)
            if chrom is not None and target_chrom is not None:
                trans = keep & (chrom[background] != target_chrom[genes[j]])
                keep = trans if trans.sum() >= min_trans else keep
            reference = block[background[keep], j]
            if len(reference) > 1 and reference.std() > 0:
                z[pairs] = (values[pairs] - reference.mean()) / reference.std()
    return values, z


def source_strata(source_values: sparse.csr_matrix, width: np.ndarray | None) -> np.ndarray:
    """Stratum of each source feature: detection-rate decile x width tercile (if known)."""
    detection = np.asarray((source_values > 0).mean(axis=0)).ravel()
    stratum = _quantile_bins(detection, 10)
    if width is not None:
        stratum = stratum * 3 + _quantile_bins(np.asarray(width, dtype=float), 3)
    return stratum


def _quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    ranks = pd.Series(values).rank(method="first").to_numpy()
    return np.minimum(((ranks - 1) * n_bins / len(values)).astype(int), n_bins - 1)


def distance_link_scores(distance: np.ndarray) -> np.ndarray:
    """Minus the distance: closer pairs score higher."""
    return -np.asarray(distance, dtype=float)
