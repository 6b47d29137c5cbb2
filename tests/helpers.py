"""Data factories shared by the tests."""

from __future__ import annotations

from pathlib import Path

import mudata as md
import numpy as np
import pytest
import scvi
from mudata import MuData

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: Modality names that ``scvi.data.synthetic_iid(return_mudata=True)`` uses.
SYNTHETIC_NAMES = {"rna": "rna", "atac": "accessibility", "protein": "protein_expression"}


def synthetic_mudata(modalities=("rna", "atac"), sparse: bool = False, n_obs: int = 200) -> MuData:
    """Synthetic paired MuData with the requested modalities, batch and labels in ``obs``."""
    full = scvi.data.synthetic_iid(
        batch_size=n_obs // 2,
        n_genes=60,
        n_regions=80,
        n_proteins=20,
        n_batches=2,
        n_labels=3,
        sparse_format="csr_matrix" if sparse else None,
        return_mudata=True,
    )
    mods = {SYNTHETIC_NAMES[m]: full.mod[SYNTHETIC_NAMES[m]] for m in modalities}
    for adata in mods.values():
        # synthetic_iid can draw cells with no counts in a small modality; give them one.
        x = adata.X
        empty = np.flatnonzero(np.asarray(x.sum(axis=1)).ravel() == 0)
        if empty.size:
            x = x.tolil() if hasattr(x, "tolil") else x
            x[empty, 0] = 1
            adata.X = x.tocsr() if hasattr(x, "tocsr") else x
    mdata = MuData(mods)
    mdata.obs["batch"] = full.obs["batch"].to_numpy()
    mdata.obs["labels"] = full.obs["labels"].to_numpy()
    return mdata


def synthetic_setup_kwargs(modalities) -> dict:
    return {
        "modalities": {f"{m}_layer": SYNTHETIC_NAMES[m] for m in modalities},
        "labels_key": "labels",
        "batch_key": "batch",
    }


def read_shared(name: str) -> MuData:
    path = SHARED_DATA / name / f"{name}.h5mu"
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests need ../shared/data beside the repository.")
    return md.read_h5mu(path)


#: A model small enough for unit tests, and quiet CPU training.
TINY = {"architecture": "small", "n_channels": 16}
QUIET = {"enable_progress_bar": False, "accelerator": "cpu"}


def train_tiny(modalities, mdata: MuData | None = None, setup: dict | None = None, **model_kwargs):
    """Register ``mdata`` (synthetic by default) and train a tiny SCDX (2 epochs, 20 steps)."""
    from scdx_scvi import SCDX

    scvi.settings.seed = 0
    mdata = synthetic_mudata(modalities) if mdata is None else mdata
    SCDX.setup_mudata(mdata, **synthetic_setup_kwargs(modalities), **(setup or {}))
    model = SCDX(mdata, **{**TINY, **model_kwargs})
    model.train(max_epochs=2, max_steps_diffusion=20, **QUIET)
    return model, mdata
