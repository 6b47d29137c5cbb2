"""Readers of local files and downloaders of public paired multi-omics datasets."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
from anndata import AnnData
from mudata import MuData
from scipy import sparse

PBMC_MULTIOME_10X_URL = (
    "https://cf.10xgenomics.com/samples/cell-arc/2.0.0/pbmc_granulocyte_sorted_10k/"
    "pbmc_granulocyte_sorted_10k_filtered_feature_bc_matrix.h5"
)
"""Filtered feature-barcode matrix of 10x Genomics' "PBMC from a healthy donor, granulocytes
removed through cell sorting (10k)" Multiome dataset (Cell Ranger ARC 2.0.0)."""

PBMC_MULTIOME_10X_SHA256: str | None = None
"""SHA256 of the file at :data:`PBMC_MULTIOME_10X_URL`, checked after download.

Not filled in yet: it must be computed from a trusted download (``sha256sum`` of the file) and
set here. While it is ``None``, :func:`pooch.retrieve` does not verify the file and logs the
SHA256 it computed.
"""

#: File extensions that :func:`read_local` reads, and how.
_READERS = {".h5mu": md.read_h5mu, ".h5ad": ad.read_h5ad}


def read_local(path: str | Path) -> MuData | AnnData:
    """Read a local ``.h5mu`` (as a MuData) or ``.h5ad`` (as a single-modality AnnData).

    Parameters
    ----------
    path
        Path to the file.

    Returns
    -------
    The MuData of a ``.h5mu`` file, or the AnnData of a ``.h5ad`` file (one modality: wrap
    several in ``mudata.MuData({"rna": rna, "atac": atac})`` before
    :meth:`~scdx_scvi.model.SCDX.setup_mudata`).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the extension is neither ``.h5mu`` nor ``.h5ad``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        where = "" if path.is_absolute() else f" (relative paths start from {str(Path.cwd())!r})"
        raise FileNotFoundError(f"Cannot read {str(path.resolve())!r}: it {what}{where}.")
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise ValueError(
            f"Cannot read {str(path)!r}: unknown extension {path.suffix or '(none)'!r}. "
            f"Supported: {sorted(_READERS)} (read a Cell Ranger ARC .h5 matrix with "
            "`scdx_scvi.datasets.read_10x_multiome(path)`)."
        )
    return _READERS[suffix](path)


def pbmc_multiome_10x(save_path: str | Path = "data/") -> MuData:
    """Download (once) and read 10x Genomics' 10k PBMC Multiome dataset (paired RNA + ATAC).

    The filtered feature-barcode matrix (all genes, and the peaks called by Cell Ranger ARC,
    for the cells that passed its filters) is fetched from :data:`PBMC_MULTIOME_10X_URL` with
    :func:`pooch.retrieve` into ``save_path`` and reused from there on later calls. The file
    carries no cell-type labels and a single batch.

    Parameters
    ----------
    save_path
        Folder where the downloaded file is cached (created if needed).

    Returns
    -------
    MuData with modalities ``"rna"`` and ``"atac"``, as read by :func:`read_10x_multiome`.

    Raises
    ------
    ImportError
        If :mod:`pooch` is not installed.

    Notes
    -----
    The download is checked against :data:`PBMC_MULTIOME_10X_SHA256` when it is set.
    """
    path = _retrieve(
        PBMC_MULTIOME_10X_URL,
        PBMC_MULTIOME_10X_SHA256,
        save_path,
        "pbmc_granulocyte_sorted_10k_filtered_feature_bc_matrix.h5",
    )
    return read_10x_multiome(path)


def read_10x_multiome(path: str | Path) -> MuData:
    """Read a Cell Ranger ARC (10x Multiome) feature-barcode matrix as paired RNA + ATAC.

    Parameters
    ----------
    path
        A ``filtered_feature_bc_matrix.h5`` file with ``Gene Expression`` and ``Peaks``
        features.

    Returns
    -------
    MuData with modalities ``"rna"`` (gene symbols, made unique, as ``var_names``; Ensembl ids
    in ``var["gene_ids"]``) and ``"atac"`` (peaks named ``chr1:start-end``), the cells in the
    file's order. Raw counts are ``float32`` CSR matrices in ``.X`` and (as a copy) in
    ``layers["counts"]``.

    Raises
    ------
    ValueError
        If the file lacks gene-expression or peak features.
    """
    import scanpy as sc

    adata = sc.read_10x_h5(path, gex_only=False)
    feature_types = adata.var["feature_types"].astype(str)
    mods = {}
    for name, feature_type in (("rna", "Gene Expression"), ("atac", "Peaks")):
        keep = (feature_types == feature_type).to_numpy()
        if not keep.any():
            raise ValueError(
                f"{str(path)!r} has no {feature_type!r} features (found "
                f"{sorted(set(feature_types))}); is it a Cell Ranger ARC (Multiome) matrix?"
            )
        x = sparse.csr_matrix(adata.X[:, keep], dtype=np.float32)
        mod = AnnData(X=x, obs=adata.obs[[]].copy(), var=adata.var.loc[keep].copy())
        mod.layers["counts"] = x.copy()
        if name == "rna":
            mod.var_names_make_unique()
        mods[name] = mod
    with md.set_options(pull_on_update=False):  # keep per-modality var columns apart
        return MuData(mods)


def _retrieve(url: str, known_hash: str | None, save_path: str | Path, fname: str) -> str:
    try:
        import pooch
    except ImportError as err:
        raise ImportError(
            "Downloading datasets needs `pooch`, which is not installed: `pip install pooch`."
        ) from err
    folder = Path(save_path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return pooch.retrieve(url, known_hash=known_hash, fname=fname, path=folder, progressbar=False)
