"""Saving and loading SCDX: an atomic ``save`` and a ``load`` with errors that name the problem."""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import mudata
import pandas as pd
import torch
from mudata import MuData

from scdx_scvi._compat import SAVE_KEYS, devices_dsp

from ._checks import check_bool, check_is_mudata

if TYPE_CHECKING:
    from ._scdx import SCDX


class SavingMixin:
    """``save`` and ``load`` of :class:`~scdx_scvi.model.SCDX`."""

    def save(
        self,
        dir_path: str | Path,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        save_kwargs: dict | None = None,
        legacy_mudata_format: bool = False,
        datamodule=None,
        **anndata_write_kwargs,
    ) -> None:
        """Save the model, and with ``save_anndata`` its MuData, into the directory ``dir_path``.

        Saving is atomic: the files are written into a temporary folder beside ``dir_path``
        and moved into ``dir_path`` only once complete. If writing fails, nothing in
        ``dir_path`` changes (a model saved there before stays loadable) and no partial file
        is left. On success the files of the model saved there before (``model.pt`` and
        ``mdata.h5mu`` with the same ``prefix``, even if this save writes no MuData) are
        replaced; other files stay. The MuData is written as it is, and left as it is (writing
        would otherwise turn its string columns into categoricals).

        After multi-process training (``strategy="ddp"``) every process holds the same model and
        runs ``save``: all check the arguments, only the first process (rank 0) checks
        ``dir_path`` and writes.

        Parameters
        ----------
        dir_path
            Directory to save into.
        prefix
            Prefix of the file names.
        overwrite
            Replace the model saved in ``dir_path``, if any (otherwise an existing ``dir_path``
            is an error).
        save_anndata
            Also save the MuData the model was set up with (``mdata.h5mu``).
        save_kwargs
            Keyword arguments for :func:`torch.save`.
        legacy_mudata_format
            Save the feature names in scvi-tools' legacy flat format.
        datamodule
            Unused by SCDX (scvi-tools' interface).
        **anndata_write_kwargs
            Keyword arguments for :meth:`mudata.MuData.write`.
        """
        target = _as_path(dir_path).absolute()
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string or None, got {prefix!r}.")
        if prefix and (os.sep in prefix or (os.altsep and os.altsep in prefix)):
            raise ValueError(f"`prefix` is part of file names and cannot hold a '/': {prefix!r}.")
        check_bool(overwrite, "overwrite")
        check_bool(save_anndata, "save_anndata")
        if _distributed_rank() > 0:
            return  # rank 0 writes (and may have created `dir_path` already)
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"{dir_path} is a file; `dir_path` must be a directory.")
        if target.exists() and not overwrite:
            raise ValueError(
                f"{dir_path} already exists; pass `overwrite=True` to replace the model saved "
                "there, or choose another directory."
            )
        if save_anndata and self.adata is None:
            raise ValueError(
                "This model was loaded without data, so there is no MuData to save: save with "
                "`save_anndata=False`, or load the model with `adata=mdata` first."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
        try:
            with _columns_kept(self.adata if save_anndata else None):
                super().save(
                    str(staging), prefix=prefix, overwrite=True, save_anndata=save_anndata,
                    save_kwargs=save_kwargs, legacy_mudata_format=legacy_mudata_format,
                    datamodule=datamodule, **anndata_write_kwargs,
                )  # fmt: skip
        except BaseException as err:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(err, OSError) or not isinstance(err, Exception):
                raise
            notes = "".join(f" ({note})" for note in getattr(err, "__notes__", ()))
            hint = (
                " Every entry of the MuData must be storable in HDF5: remove or convert the "
                "object named above (e.g. in `mdata.uns`), or save with `save_anndata=False`."
                if save_anndata
                else ""
            )
            raise ValueError(
                f"Could not save the model to {dir_path}: {err}{notes}. Nothing at {dir_path} "
                f"was changed.{hint}"
            ) from err
        prefix = prefix or ""
        owned = {f"{prefix}{name}" for name in (SAVE_KEYS.MODEL_FNAME, SAVE_KEYS.MDATA_FNAME)}
        _swap_in(staging, target, owned)

    @classmethod
    @devices_dsp.dedent
    def load(
        cls,
        dir_path: str | Path,
        adata: MuData | None = None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
        backup_url: str | None = None,
        **kwargs,
    ) -> SCDX:
        """Load a model saved with :meth:`save`.

        Parameters
        ----------
        dir_path
            Directory the model was saved into.
        adata
            MuData with the training features to attach (it is registered with the saved
            setup). ``None`` uses the ``mdata.h5mu`` saved with the model, if any; ``False``
            loads the model without data (pass data to each method then).
        %(param_accelerator)s
        %(param_device)s
        prefix
            Prefix of the file names.
        backup_url
            URL of ``model.pt`` to download if it is not in ``dir_path``.
        **kwargs
            Further arguments of :meth:`scvi.model.base.BaseModelClass.load`.

        Returns
        -------
        The model, on ``device``.
        """
        path = _as_path(dir_path)
        prefix = prefix or ""
        model_file = path / f"{prefix}{SAVE_KEYS.MODEL_FNAME}"
        if backup_url is None and not model_file.is_file():
            if not path.exists():
                problem = "the directory does not exist"
            elif not path.is_dir():
                problem = "it is a file, not a directory written by `model.save(dir_path)`"
            else:
                files = sorted(os.listdir(path))
                prefixes = [
                    f.removesuffix(SAVE_KEYS.MODEL_FNAME)
                    for f in files
                    if f.endswith(SAVE_KEYS.MODEL_FNAME)
                ]
                hint = f"; saved with a prefix? e.g. prefix={prefixes[0]!r}" if prefixes else ""
                problem = f"it holds no {model_file.name} (files: {files[:10]}){hint}"
            raise FileNotFoundError(f"Cannot load an SCDX model from {dir_path}: {problem}.")
        if adata is not None and adata is not False:
            check_is_mudata(adata, "SCDX.load(adata=...)")
        data_file = path / f"{prefix}{SAVE_KEYS.MDATA_FNAME}"
        if adata is None and data_file.is_file():
            try:
                adata = mudata.read_h5mu(data_file)
            except Exception as err:
                raise ValueError(
                    f"Could not read the MuData saved with the model, {data_file}: {err}. Pass "
                    "the data yourself with `adata=mdata`, or `adata=False` to load the model "
                    "without data."
                ) from err
        try:
            return super().load(
                str(dir_path), adata=adata, accelerator=accelerator, device=device,
                prefix=prefix or None, backup_url=backup_url, **kwargs,
            )  # fmt: skip
        except (pickle.UnpicklingError, EOFError) as err:
            raise ValueError(
                f"Could not read {model_file}: {err}. The file is damaged or was not written by "
                "`SCDX.save`; save the model again."
            ) from err


@contextmanager
def _columns_kept(mdata: MuData | None) -> Iterator[None]:
    """Undo what writing a MuData does to it in place (string columns made categorical)."""

    def frames() -> list[pd.DataFrame]:
        mods = mdata.mod.values()
        return [mdata.obs, mdata.var] + [frame for a in mods for frame in (a.obs, a.var)]

    if mdata is None:
        yield
        return
    before = [dict(frame.items()) if frame.columns.is_unique else {} for frame in frames()]
    try:
        yield
    finally:
        for frame, columns in zip(frames(), before, strict=True):
            for name, column in columns.items():
                if name in frame.columns and frame[name].dtype != column.dtype:
                    frame[name] = column.array


def _distributed_rank() -> int:
    """Rank of this process in a multi-process run (0 when there is none)."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_rank() if distributed else 0


def _as_path(dir_path: object) -> Path:
    if not isinstance(dir_path, str | os.PathLike):
        raise TypeError(f"`dir_path` must be a path (str or pathlib.Path), got {dir_path!r}.")
    return Path(dir_path)


def _swap_in(staging: Path, target: Path, owned: set[str]) -> None:
    """Move the complete save in ``staging`` into ``target``, replacing the files in ``owned``.

    A new ``target`` is the renamed ``staging``. An existing one keeps its inode (it may be the
    working directory) and its other files: the old files named in ``owned`` move to a backup
    folder beside it, the new ones move in (renames within one file system), and the backup is
    deleted; if a move fails, the old files are put back.
    """
    if not target.exists():
        staging.rename(target)
        return
    backup = target.with_name(f".{target.name}.replaced-{uuid.uuid4().hex[:8]}")
    backup.mkdir()
    old = [name for name in owned if (target / name).exists()]
    new = [entry.name for entry in staging.iterdir()]
    try:
        for name in old:
            (target / name).rename(backup / name)
        for name in new:
            (staging / name).rename(target / name)
    except BaseException:
        for name in new:
            if (target / name).exists() and not (staging / name).exists():
                (target / name).rename(staging / name)
        for name in old:
            if (backup / name).exists():
                (backup / name).rename(target / name)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(backup, ignore_errors=True)
