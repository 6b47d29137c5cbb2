"""The ``scdx train``, ``generate`` and ``translate`` commands, through the public SCDX API."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._inputs import quiet_libraries

if TYPE_CHECKING:
    from scdx_scvi import SCDX


class CommandError(Exception):
    """A problem with a command's input, reported as ``scdx <command>: error: <message>``."""


def message(error: BaseException) -> str:
    """One line for an exception (``KeyError`` quotes its argument: unwrap it)."""
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def _existing_file(path: Path) -> Path:
    if not path.exists():
        raise CommandError(f"no such file: {path}")
    if path.is_dir():
        raise CommandError(f"{path} is a directory, not a file")
    return path


def _read(reader: Callable[[Path], Any], path: Path) -> Any:
    """Read a file with ``reader``, naming the file in the error if it cannot be read."""
    try:
        return reader(path)
    except Exception as error:  # h5py, anndata and mudata raise many kinds
        raise CommandError(f"cannot read {path}: {message(error)}") from error


def _load_model(path: Path, accelerator: str) -> SCDX:
    """Load a model saved by ``scdx train`` (no data needed), with a trained diffusion."""
    from scdx_scvi import SCDX

    if not path.is_dir():
        raise CommandError(f"no such model directory: {path}")
    if not (path / "model.pt").exists():
        raise CommandError(f"{path} holds no saved model (no model.pt); create one with scdx train")
    try:
        with quiet_libraries():
            model = SCDX.load(path, accelerator=accelerator)
    except Exception as error:  # a damaged file fails deep inside torch or scvi-tools
        raise CommandError(f"cannot load the model in {path}: {message(error)}") from error
    if not model.is_diffusion_trained_:
        raise CommandError(
            f"the model in {path} has no trained diffusion stage; train it with scdx train"
        )
    return model


def _last(history: dict | None, key: str) -> float | None:
    if not history or key not in history or len(history[key]) == 0:
        return None
    return float(history[key].iloc[-1, 0])


def train(args: argparse.Namespace) -> int:
    """Read a paired MuData, train both stages of SCDX and save the model."""
    import mudata as md
    import scvi

    from scdx_scvi import SCDX

    data = _existing_file(args.data)
    out = args.out
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} exists and is not a directory")
    overwrite = args.overwrite or (out.is_dir() and not any(out.iterdir()))
    if out.exists() and not overwrite:
        raise CommandError(f"{out} already exists; choose another --out or pass --overwrite")
    scvi.settings.seed = args.seed
    mdata = _read(partial(md.read_h5mu, backed="r" if args.backed else None), data)
    SCDX.setup_mudata(
        mdata,
        rna_layer=args.rna_layer,
        atac_layer=args.atac_layer,
        protein_layer=args.protein_layer,
        labels_key=args.labels_key,
        batch_key=args.batch_key,
        modalities=args.modalities,
    )
    model = SCDX(mdata, architecture=args.architecture)
    print(f"data: {data.name}: {mdata.n_obs} cells")
    for m, mod in model.modality_names.items():
        print(f"  {m} ({mod!r}): {mdata.mod[mod].n_vars} features")
    if args.labels_key is not None:
        n_labels = mdata.obs[args.labels_key].nunique()
        print(f"  labels {args.labels_key!r}: {n_labels} categories")

    start = time.perf_counter()
    model.train(
        max_epochs=args.max_epochs,
        max_steps_diffusion=args.diffusion_steps,
        accelerator=args.accelerator,
    )
    seconds = time.perf_counter() - start
    ran = model.epochs_trained
    print(
        f"trained in {seconds:.1f} s: autoencoder {ran['autoencoder']} epochs, diffusion "
        f"{ran['diffusion_steps']} steps in {ran['diffusion']} epochs (at most "
        f"{args.diffusion_steps} steps)"
    )
    print("final losses")
    history, diffusion = model.history, model.diffusion_history
    keys = ["train_loss", "validation_loss"]
    keys += [f"reconstruction_loss_{m}_validation" for m in model.modalities]
    for source, key in [(history, k) for k in keys] + [
        (diffusion, k) for k in ("diffusion_loss_train", "diffusion_loss_validation")
    ]:
        value = _last(source, key)
        if value is not None:
            print(f"  {key:<40} {value:12.4f}")
    model.save(out, overwrite=True, save_anndata=False)
    print(f"model saved to {out}")
    return 0


def generate(args: argparse.Namespace) -> int:
    """Generate paired cells with a saved model and write them as a MuData."""
    model = _load_model(args.model, args.accelerator)
    cells = model.generate(
        n_cells=args.n_cells,
        labels=args.labels,
        sampler=args.sampler,
        n_steps=args.steps,
        guidance_scale=args.guidance_scale,
        seed=args.seed,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cells.write_h5mu(args.out)
    mods = ", ".join(f"{mod} ({adata.n_vars} features)" for mod, adata in cells.mod.items())
    print(f"generated {cells.n_obs} cells: {mods}")
    if args.labels is not None and len(cells.obs.columns):  # the label is the first column
        for label, n in cells.obs.iloc[:, 0].value_counts(sort=False).items():
            if n:
                print(f"  {label}: {n}")
    print(f"written to {args.out}")
    return 0


def _read_query(path: Path, backed: bool) -> Any:
    import anndata as ad
    import mudata as md

    mode = "r" if backed else None
    suffix = path.suffix.lower()
    if suffix == ".h5ad":
        return _read(partial(ad.read_h5ad, backed=mode), path)
    if suffix == ".h5mu":
        return _read(partial(md.read_h5mu, backed=mode), path)
    raise CommandError(f"cannot read {path}: expected a .h5ad or .h5mu file")


def translate(args: argparse.Namespace) -> int:
    """Translate a query's source modality into the target modality with a saved model."""
    from mudata import MuData

    query_path = _existing_file(args.query)
    model = _load_model(args.model, args.accelerator)
    known = {
        **{m: m for m in model.modalities},
        **{mod: m for m, mod in model.modality_names.items()},
    }
    for what, name in (("source", args.source), ("target", args.target)):
        if name not in known:
            raise CommandError(f"Unknown {what} modality {name!r}; the model knows {sorted(known)}")
    query = _read_query(query_path, args.backed)
    if isinstance(query, MuData) and args.layer is not None:
        mod = model.modality_names[known[args.source]]
        if mod not in query.mod:
            raise CommandError(
                f"{query_path.name} has no modality {mod!r} ({known[args.source]}); it has "
                f"{list(query.mod.keys())}"
            )
        query = query.mod[mod]
    result = model.get_translated_modality(
        query,
        source_modality=args.source,
        target_modality=args.target,
        method=args.method,
        sampler=args.sampler,
        n_steps=args.steps,
        n_samples=args.samples,
        expected=args.expected,
        layer=args.layer,
        seed=args.seed,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.write_h5ad(args.out)
    info = result.uns["scdx_translation"]
    print(
        f"translated {result.n_obs} cells from {args.source} to {args.target} "
        f"({result.n_vars} features) with method {info['method']!r}, {info['n_steps']} steps, "
        f"{info['n_samples']} sample(s)"
    )
    print(f"written to {args.out}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Run the end-to-end demo with the parsed options (the demo is imported here only)."""
    from ._demo import run_demo
    from ._parser import demo_config

    run_demo(demo_config(args), command=" ".join(["scdx", *args.argv]))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": demo,
    "train": train,
    "generate": generate,
    "translate": translate,
}
