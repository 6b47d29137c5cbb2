"""Shared plumbing of ``generate`` and ``get_translated_modality``: state, seeds, label codes.

The functions here turn the user's arguments (label names, counts, a batch name, a seed) into
the codes and random streams that the module samples with; the pipeline itself (encode, sample,
decode) is :meth:`~scdx_scvi.module.SCDXModule.generate` and
:meth:`~scdx_scvi.module.SCDXModule.translate` over
:meth:`~scdx_scvi.module.LatentDiffusion.sample`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS

from scdx_scvi._compat import _FIELD_REGISTRIES_KEY, _STATE_REGISTRY_KEY

from ._checks import check_int

#: What ``labels`` may be besides a dict: one label per cell.
LIST_LIKE = (Sequence, np.ndarray, pd.Series, pd.Index)
#: Largest seed: ``seed + 1`` seeds torch's global generator, which takes 64-bit seeds.
MAX_SEED = 2**63 - 2


def check_diffusion_trained(model) -> None:
    """Refuse to sample from a diffusion that was never trained, or is stale.

    The diffusion is stale when the autoencoder was trained again after it: its denoiser was
    fitted to the previous latents.
    """
    if model.is_diffusion_trained_:
        return
    if model.diffusion_history_ is not None:
        raise RuntimeError(
            "The autoencoder was trained again after the diffusion, so the diffusion no "
            "longer matches its latents: run `model.train_diffusion()` again."
        )
    raise RuntimeError("Train the diffusion first: `model.train()` or `train_diffusion()`.")


def resolve_seed(seed: int | None) -> int:
    """Check a user's seed; ``None`` draws a fresh one."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % 2**31)
    return check_int(seed, "seed", minimum=0, maximum=MAX_SEED)


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[torch.Generator]:
    """Yield the generator of the sampler's draws, with the global RNG forked and seeded.

    The sampler draws from the generator (seeded with ``seed``); the count draws of the
    likelihoods use the global RNG, seeded with ``seed + 1`` inside a fork so that the user's
    random state is left as it was.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + 1)
        yield generator


def registered_categories(registry: dict, registry_key: str) -> list:
    """Categories of a registered categorical field, read from the saved registry."""
    state = registry[_FIELD_REGISTRIES_KEY][registry_key][_STATE_REGISTRY_KEY]
    return list(state["categorical_mapping"])


def label_categories(registry: dict, n_labels: int) -> list | None:
    """Return the labels the diffusion is conditioned on; ``None`` if it is unconditional."""
    return registered_categories(registry, REGISTRY_KEYS.LABELS_KEY) if n_labels else None


def draw_labels(label_counts: torch.Tensor, n_cells: int, seed: int) -> np.ndarray:
    """Label codes drawn with the proportions of the training cells (as the reference does)."""
    counts = label_counts.cpu().double().numpy()
    return np.random.default_rng(seed).choice(len(counts), size=n_cells, p=counts / counts.sum())


def check_trained_labels(codes: np.ndarray, categories: list, label_counts: torch.Tensor) -> None:
    """Refuse labels that no training cell had: the model never learned them."""
    counts = label_counts.cpu().numpy()
    untrained = sorted({str(categories[c]) for c in np.unique(codes) if counts[c] == 0})
    if untrained:
        raise ValueError(
            f"No training cell has label(s) {untrained} (they are categories of the "
            "labels column only), so the model never learned them: leave them out, or "
            "train with cells of these types."
        )


def _codes_of(names: Sequence, categories: list, label_counts: torch.Tensor) -> np.ndarray:
    categories = [str(c) for c in categories]
    unknown = sorted({str(n) for n in names} - set(categories))
    if unknown:
        raise ValueError(f"Unknown label(s) {unknown[:5]}; the model knows {categories}.")
    codes = pd.Categorical([str(n) for n in names], categories=categories).codes
    codes = codes.astype(np.int64)
    check_trained_labels(codes, categories, label_counts)
    return codes


def generation_labels(
    labels: Mapping[str, int] | Sequence[str] | None,
    n_cells: int | None,
    categories: list | None,
    label_counts: torch.Tensor,
    seed: int,
) -> np.ndarray:
    """Label codes of the cells to generate.

    Parameters
    ----------
    labels
        ``{label: n_cells}``, one label per cell, or ``None`` (labels drawn with the training
        proportions).
    n_cells
        Number of cells (checked against ``labels`` when both are given).
    categories
        The registered labels, ``None`` for an unconditional model (all codes 0).
    label_counts
        Training cells per label.
    seed
        Seed of the draw of labels.
    """
    n_cells = check_int(n_cells, "n_cells", minimum=0, optional=True)
    if labels is None:
        if n_cells is None:
            raise ValueError("Give `n_cells`, or `labels` as a dict {label: n_cells} or list.")
        if categories is None:
            return np.zeros(n_cells, dtype=np.int64)
        return draw_labels(label_counts, n_cells, seed)
    if categories is None:
        raise ValueError(
            "This model's diffusion is unconditional (no `labels_key` at setup): "
            "generate with `n_cells` only."
        )
    if isinstance(labels, Mapping):
        names = []
        for name, count in labels.items():
            names += [name] * check_int(count, f"labels[{name!r}]", minimum=0)
    elif isinstance(labels, str) or not isinstance(labels, LIST_LIKE):
        raise TypeError(
            f"`labels` must be a dict {{label: n_cells}} or a list of labels, got {labels!r}."
        )
    else:
        names = list(labels)
    if n_cells is not None and n_cells != len(names):
        raise ValueError(f"`n_cells`={n_cells} but `labels` asks for {len(names)} cells.")
    return _codes_of(names, categories, label_counts)


def query_labels(
    labels: str | Sequence[str] | None,
    obs: pd.DataFrame,
    categories: list | None,
    label_counts: torch.Tensor,
) -> np.ndarray | None:
    """Label codes of query cells (a column of ``obs`` or one label per cell); ``None``: null."""
    if labels is None:
        return None
    if categories is None:
        raise ValueError("The model was not trained with labels (`labels_key`).")
    if isinstance(labels, str):
        if labels not in obs.columns:
            raise KeyError(f"`labels={labels!r}` is not a column of the query obs.")
        labels = obs[labels]
    elif not isinstance(labels, LIST_LIKE):
        raise TypeError(
            f"`labels` must be a column of the query obs or one label per cell, got {labels!r}."
        )
    labels = np.asarray(labels).astype(str)
    if len(labels) != len(obs):
        raise ValueError(f"Got {len(labels)} labels for {len(obs)} cells.")
    return _codes_of(labels, categories, label_counts)


def batch_code(batch: str | None, registry: dict, conditioned: bool) -> int | None:
    """Code of the batch to sample and decode as; ``None`` without a batch.

    Parameters
    ----------
    batch
        The user's batch name.
    registry
        The model's registry (with the registered batches).
    conditioned
        Whether the denoiser or the decoder is conditioned on the batch.
    """
    if batch is None:
        return None
    if not conditioned:
        raise ValueError(
            "This model is not conditioned on the batch: register `batch_key` and use "
            "`use_batch=True` (decoder) or `diffusion_batch=True` (denoiser)."
        )
    categories = [str(c) for c in registered_categories(registry, REGISTRY_KEYS.BATCH_KEY)]
    if str(batch) not in categories:
        raise ValueError(f"Unknown batch {batch!r}; the model knows {categories}.")
    return categories.index(str(batch))
