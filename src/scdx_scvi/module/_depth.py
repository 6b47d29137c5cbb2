"""Sequencing depth of generated cells: drawn given their latents, or taken from training cells."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

#: Least-squares fits need this many training cells per coefficient; with fewer, the depth
#: model keeps only its intercept (the log-normal of all training cells).
_CELLS_PER_COEFFICIENT = 2


class LatentDepth(nn.Module):
    r"""Log-normal depth of a cell whose mean is linear in the cell's latent.

    For each modality, :math:`\log d = [z, 1]\,\beta + \sigma\,\varepsilon`, with
    :math:`\varepsilon \sim N(0, 1)`, fitted by least squares on the training cells' latents and
    depths (library size for counts, number of open peaks for ATAC), :math:`\sigma` the SD of
    the residuals. Generated cells thus get a depth that goes with the state the latent
    encodes (deep cells of a type stay deep), with the spread the latent does not explain,
    where a per-label log-normal draws it independently of the state. Drawn depths are kept
    within the range of the training cells' depths: latents far from the training cells (a
    diffusion trained for a few steps) would otherwise extrapolate the linear mean to depths
    no cell has (on synthetic data at 200,000 peaks, 35 % of the peaks open against 2.7 %).

    Coefficients are NaN until :meth:`fit` is called (and in models saved before they
    existed): :meth:`fitted` says so.

    Parameters
    ----------
    n_latent
        Latent size of each modality.
    """

    def __init__(self, n_latent: Mapping[str, int]):
        super().__init__()
        self.modalities = tuple(n_latent)
        for m, size in n_latent.items():
            self.register_buffer(f"coef_{m}", torch.full((int(size) + 1,), float("nan")))
            self.register_buffer(f"sd_{m}", torch.tensor(float("nan")))
            self.register_buffer(f"range_{m}", torch.full((2,), float("nan")))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # models saved before the depth model existed load with it unfitted
        for name, buffer in self.named_buffers(recurse=False):
            state_dict.setdefault(prefix + name, torch.full_like(buffer, float("nan")))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fitted(self, modality: str) -> bool:
        """Whether the depth model of ``modality`` was fitted."""
        return bool(torch.isfinite(getattr(self, f"sd_{modality}")))

    @torch.no_grad()
    def fit(self, modality: str, z: torch.Tensor, depth: torch.Tensor) -> None:
        """Fit the model of ``modality`` on latents ``(cells, d)`` and depths ``(cells,)``.

        Depths below 1 count as 1. With fewer than two cells per coefficient only the
        intercept is fitted. The smallest and largest log depth bound the draws.
        """
        y = torch.log(depth.reshape(-1).double().clamp(min=1.0))
        n, d = z.shape
        if n == 0:
            raise ValueError(f"No training cell has {modality!r}: its depth cannot be fitted.")
        coef = getattr(self, f"coef_{modality}")
        if n >= _CELLS_PER_COEFFICIENT * (d + 1):
            x = torch.cat([z.double(), z.new_ones(n, 1, dtype=torch.float64)], dim=-1)
            gram = x.T @ x
            ridge = 1e-8 * gram.diagonal().mean() * torch.eye(d + 1, dtype=gram.dtype)
            beta = torch.linalg.solve(gram + ridge.to(gram.device), x.T @ y)
            residual = y - x @ beta
        else:
            beta = torch.cat([y.new_zeros(d), y.mean().reshape(1)])
            residual = y - y.mean()
        coef.copy_(beta.to(coef))
        sd = float(residual.std()) if n > 1 else 0.0
        getattr(self, f"sd_{modality}").fill_(sd)
        getattr(self, f"range_{modality}").copy_(torch.stack([y.min(), y.max()]))

    def sample(self, modality: str, z: torch.Tensor) -> torch.Tensor:
        """Draw depths ``(cells, 1)`` for latents ``z`` (global RNG), within the training range."""
        coef = getattr(self, f"coef_{modality}")
        mean = z.to(coef) @ coef[:-1] + coef[-1]
        sd = getattr(self, f"sd_{modality}")
        log_depth = mean + sd * torch.randn_like(mean)
        low, high = getattr(self, f"range_{modality}")
        if torch.isfinite(low):  # models saved before the range was kept draw unbounded
            log_depth = log_depth.clamp(low, high)
        return torch.exp(log_depth).unsqueeze(-1)


class TrainingDepths(nn.Module):
    """Library sizes of training cells, for generated cells to take those of a cell of their label.

    Each generated cell takes the library sizes of one training cell of its label, drawn with
    replacement, for every count modality at once: the library sizes of generated cells then
    follow the training cells' distribution whatever its shape (a per-label log-normal misses
    a skewed or bimodal one, e.g. several cell types under one label or none), and the cell's
    RNA and protein depths keep their correlation (two log-normals draw them independently).
    Cells lacking a modality (mosaic data) are not drawn for the modalities they have unless no
    cell of the label has them all; a label without training cells draws from every cell.

    The buffers are empty until :meth:`fit` is called (and in models saved before they
    existed): :meth:`fitted` says so.

    Parameters
    ----------
    modalities
        The count modalities (RNA, protein) whose library sizes are kept.
    """

    def __init__(self, modalities: Sequence[str]):
        super().__init__()
        self.modalities = tuple(modalities)
        self.register_buffer("labels", torch.zeros(0, dtype=torch.long))
        self.register_buffer("libraries", torch.zeros(0, len(self.modalities)))
        self._pools: tuple | None = None  # (labels, libraries, rows): see _rows

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, buffer in self.named_buffers(recurse=False):
            saved = state_dict.setdefault(prefix + name, buffer)  # older models: left empty
            self._buffers[name] = buffer.new_empty(saved.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fitted(self) -> bool:
        """Whether training cells' library sizes are kept."""
        return self.labels.numel() > 0

    @torch.no_grad()
    def fit(self, labels: torch.Tensor, libraries: Mapping[str, torch.Tensor]) -> None:
        """Keep the label codes ``(cells,)`` and library sizes ``{modality: (cells,)}``.

        A library size is NaN where the cell lacks the modality.
        """
        values = torch.stack([libraries[m].reshape(-1).float() for m in self.modalities], -1)
        self.labels = labels.reshape(-1).long().to(self.labels.device)
        self.libraries = values.to(self.libraries.device)

    def _rows(self) -> dict[int, list[torch.Tensor]]:
        """Per label code (``-1``: every cell), the rows with every modality, then with each.

        Found once for the kept cells (again after :meth:`fit`, loading or moving the module),
        so that each draw costs the number of drawn cells, not the number of training cells.
        """
        kept = self._pools
        if kept is None or kept[0] is not self.labels or kept[1] is not self.libraries:
            observed = torch.isfinite(self.libraries)
            masks = [observed.all(-1), *observed.unbind(-1)]

            def rows(cells: torch.Tensor) -> list[torch.Tensor]:
                return [torch.nonzero(cells & mask).reshape(-1) for mask in masks]

            pools = {int(c): rows(self.labels == c) for c in self.labels.unique()}
            pools[-1] = rows(torch.ones_like(observed[:, 0]))
            self._pools = (self.labels, self.libraries, pools)
        return self._pools[2]

    def sample(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Draw library sizes ``{modality: (cells, 1)}`` for label codes ``labels`` (global RNG)."""
        codes = labels.reshape(-1).long().to(self.labels.device)
        pools = self._rows()
        out = self.libraries.new_empty(len(codes), len(self.modalities))
        for code in codes.unique().tolist():
            chosen = codes == code
            complete, *each = pools.get(code, pools[-1])
            if len(complete):  # one training cell for every modality
                out[chosen] = self.libraries[_draw(complete, int(chosen.sum()))]
                continue
            for j, rows in enumerate(each):
                rows = rows if len(rows) else pools[-1][1 + j]
                out[chosen, j] = self.libraries[_draw(rows, int(chosen.sum())), j]
        return {m: out[:, j : j + 1] for j, m in enumerate(self.modalities)}


def _draw(rows: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` of ``rows``, drawn uniformly with replacement."""
    return rows[torch.randint(len(rows), (n,), device=rows.device)]
