"""The demo's settings and its input data: what ``scdx demo`` runs on, checked in one place."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from mudata import MuData

#: Column of ``obs`` used as the cell type when ``labels_key`` is not given.
DEFAULT_LABELS_KEY = "cell_type"
#: Display names of the modality kinds.
DISPLAY = {"rna": "RNA", "atac": "ATAC", "protein": "protein"}


class DemoInputError(ValueError):
    """A problem with the demo's input data, reported in one line."""


def _option(default, help: str, metavar: str | None = None, minimum: int | None = 1):
    """Declare a :class:`DemoConfig` field with the text of its ``scdx demo`` option."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "minimum": minimum})


@dataclass
class DemoConfig:
    """Settings of :func:`~scdx_scvi.cli.run_demo`; ``scdx demo`` has one option per field.

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
    architecture, n_channels, max_epochs, diffusion_steps
        Autoencoder size preset, base width of the diffusion U-Net, maximum autoencoder epochs
        and maximum diffusion optimiser steps; ``None`` (default): the package defaults, the
        model of record (``SCDX(mdata)`` and ``model.train()``, with early stopping).
    n_generate
        Cells to generate; ``None``: as many as the held-out cells, of the same cell types.
    progress
        Show progress bars while training, generating and translating.
    figures
        Draw the figures (UMAPs and the per-gene scatter).
    """

    data: Path | None = _option(
        None,
        "paired MuData with raw counts: RNA and ATAC and/or protein (default: simulated cells, "
        "see --n-cells)",
        "FILE.h5mu",
    )
    labels_key: str | None = _option(
        None,
        "obs column with cell types; generation is conditioned on it (default: cell_type if the "
        "data has it)",
        "KEY",
    )
    out: Path = _option(
        Path("demo_output"),
        "output folder; files of an earlier demo there are replaced (default: %(default)s)",
        "DIR",
    )
    accelerator: str = _option("auto", "device to run on (default: %(default)s)")
    seed: int = _option(0, "random seed (default: %(default)s)", "N", minimum=None)
    n_cells: int = _option(2000, "simulated cells, without --data (default: %(default)s)", "N")
    n_genes: int = _option(1000, "simulated genes, without --data (default: %(default)s)", "N")
    n_peaks: int = _option(3000, "simulated peaks, without --data (default: %(default)s)", "N")
    n_proteins: int = _option(
        0, "simulated proteins (a third modality), without --data (default: %(default)s)", "N", 0
    )
    n_cell_types: int = _option(6, "simulated cell types (default: %(default)s)", "N")
    architecture: str | None = _option(
        None, "autoencoder size preset (default: the package's, small)"
    )
    n_channels: int | None = _option(
        None, "base width of the diffusion U-Net (default: the package's, 64)", "C"
    )
    max_epochs: int | None = _option(
        None,
        "maximum autoencoder epochs, with early stopping (default: the package's, 25 to 300 by "
        "the number of cells)",
        "N",
    )
    diffusion_steps: int | None = _option(
        None,
        "maximum diffusion optimiser steps, with early stopping (default: the package's, 4,000)",
        "N",
    )
    n_generate: int | None = _option(
        None,
        "cells to generate, with the held-out cell-type composition (default: as many as the "
        "held-out cells)",
        "N",
    )
    progress: bool = _option(True, "hide the progress bars")
    figures: bool = _option(True, "do not draw the figures")


@dataclass
class DemoData:
    """Paired cells to run the demo on."""

    mdata: MuData
    description: str
    modalities: dict[str, str]
    labels_key: str | None
    simulated: bool


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


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
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
            warnings.filterwarnings("ignore", message=".*no saved anndata", category=UserWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*treespec.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
