"""The ``scdx`` command line: ``demo``, ``train``, ``generate`` and ``translate``."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
import warnings
from pathlib import Path

from scdx_scvi._demo import DemoConfig, run_demo


def demo_config(args: argparse.Namespace) -> DemoConfig:
    """Build the settings of the demo from the parsed ``scdx demo`` options."""
    return DemoConfig(
        data=args.data,
        labels_key=args.labels_key,
        out=args.out,
        accelerator=args.accelerator,
        seed=args.seed,
        n_cells=args.n_cells,
        n_genes=args.n_genes,
        n_peaks=args.n_peaks,
        n_proteins=args.n_proteins,
        architecture=args.architecture,
        n_channels=args.n_channels,
        max_epochs=args.max_epochs,
        diffusion_steps=args.diffusion_steps,
        n_generate=args.n_generate,
        progress=not args.no_progress,
        figures=not args.no_figures,
    )


def demo(args: argparse.Namespace) -> int:
    """Run the end-to-end demo (see :func:`scdx_scvi._demo.run_demo`) with the parsed options."""
    run_demo(demo_config(args), command=" ".join(["scdx", *args.argv]))
    return 0


#: Exceptions that the package raises for problems with the user's input.
_USER_ERRORS = (ValueError, KeyError, TypeError, OSError)

_MODALITY_KEYS = {
    "rna": "rna_layer",
    "atac": "atac_layer",
    "protein": "protein_layer",
    "labels": "labels_key",
    "batch": "batch_key",
}


class CommandError(Exception):
    """A problem with a command's input, reported as ``scdx <command>: error: <message>``."""


def _message(error: BaseException) -> str:
    """One line for an exception (``KeyError`` quotes its argument: unwrap it)."""
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def _parse_modalities(text: str) -> dict[str, str]:
    """Parse ``rna=NAME,atac=NAME`` into the ``modalities`` argument of ``setup_mudata``."""
    modalities = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, name = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"expected KIND=NAME, got {item!r}")
        if key not in _MODALITY_KEYS:
            raise argparse.ArgumentTypeError(
                f"unknown kind {key!r} in {item!r}; use {', '.join(_MODALITY_KEYS)}"
            )
        modalities[_MODALITY_KEYS[key]] = name
    if not modalities:
        raise argparse.ArgumentTypeError("expected e.g. rna=rna,atac=atac")
    return modalities


_LABEL_COUNT = re.compile(r"\s*(.+?)\s*=\s*(\d+)\s*(?:,|$)")


def _parse_label_counts(text: str) -> dict[str, int]:
    """Parse ``"T cell=500,B cell=100"`` into ``{label: number of cells}``."""
    counts: dict[str, int] = {}
    pos = 0
    while pos < len(text):
        match = _LABEL_COUNT.match(text, pos)
        if match is None:
            raise argparse.ArgumentTypeError(
                f"expected LABEL=N[,LABEL=N...], e.g. 'T cell=500,B cell=100'; got {text!r}"
            )
        counts[match[1]] = counts.get(match[1], 0) + int(match[2])
        pos = match.end()
    if sum(counts.values()) == 0:
        raise argparse.ArgumentTypeError("ask for at least one cell, e.g. 'T cell=500'")
    return counts


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _existing_file(path: Path) -> Path:
    if not path.exists():
        raise CommandError(f"no such file: {path}")
    if path.is_dir():
        raise CommandError(f"{path} is a directory, not a file")
    return path


def _read(reader, path: Path):
    """Read a file with ``reader``, naming the file in the error if it cannot be read."""
    try:
        return reader(path)
    except OSError as error:
        raise CommandError(f"cannot read {path}: {_message(error)}") from error


def _load_model(path: Path, accelerator: str):
    """Load a model saved by ``scdx train`` (no data needed), with a trained diffusion."""
    from scdx_scvi import SCDX

    if not path.is_dir():
        raise CommandError(f"no such model directory: {path}")
    if not (path / "model.pt").exists():
        raise CommandError(f"{path} holds no saved model (no model.pt); create one with scdx train")
    quiet = logging.getLogger("scvi.data._download")  # "model.pt already downloaded"
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*no saved anndata", category=UserWarning)
            model = SCDX.load(path, accelerator=accelerator)
    finally:
        quiet.setLevel(level)
    if not getattr(model, "is_diffusion_trained_", False):
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
    mdata = _read(md.read_h5mu, data)
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
    for m, mod in model._modality_names.items():
        print(f"  {m} ({mod!r}): {mdata.mod[mod].n_vars} features")
    if args.labels_key is not None:
        print(f"  labels {args.labels_key!r}: {model.module.n_labels} categories")

    start = time.perf_counter()
    model.train(
        max_epochs=args.max_epochs,
        max_steps_diffusion=args.diffusion_steps,
        accelerator=args.accelerator,
    )
    seconds = time.perf_counter() - start
    history, diffusion = model.history, model.diffusion_history
    n_epochs = len(history["train_loss"]) if history and "train_loss" in history else 0
    n_diffusion = len(diffusion["diffusion_loss_train"]) if diffusion else 0
    print(
        f"trained in {seconds:.1f} s: autoencoder {n_epochs} epochs, diffusion {n_diffusion} "
        f"epochs (at most {args.diffusion_steps} steps)"
    )
    print("final losses")
    keys = ["train_loss", "validation_loss"]
    keys += [f"reconstruction_loss_{m}_validation" for m in model.modalities]
    for key in keys:
        value = _last(history, key)
        if value is not None:
            print(f"  {key:<40} {value:12.4f}")
    for key in ("diffusion_loss_train", "diffusion_loss_validation"):
        value = _last(diffusion, key)
        if value is not None:
            print(f"  {key:<40} {value:12.4f}")
    model.save(out, overwrite=True, save_anndata=False)
    print(f"model saved to {out}")
    return 0


def generate(args: argparse.Namespace) -> int:
    """Generate paired cells with a saved model and write them as a MuData."""
    from scdx_scvi._compat import _SETUP_ARGS_KEY

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
    label_key = model.registry_[_SETUP_ARGS_KEY].get("labels_key")
    if label_key is not None and label_key in cells.obs:
        for label, n in cells.obs[label_key].value_counts(sort=False).items():
            if n:
                print(f"  {label}: {n}")
    print(f"written to {args.out}")
    return 0


def _read_query(path: Path):
    import anndata as ad
    import mudata as md

    suffix = path.suffix.lower()
    if suffix == ".h5ad":
        return _read(ad.read_h5ad, path)
    if suffix == ".h5mu":
        return _read(md.read_h5mu, path)
    raise CommandError(f"cannot read {path}: expected a .h5ad or .h5mu file")


def translate(args: argparse.Namespace) -> int:
    """Translate a query's source modality into the target modality with a saved model."""
    from mudata import MuData

    query_path = _existing_file(args.query)
    model = _load_model(args.model, args.accelerator)
    source = model._modality(args.source, "source modality")
    model._modality(args.target, "target modality")
    query = _read_query(query_path)
    if isinstance(query, MuData) and args.layer is not None:
        mod = model._modality_names[source]
        if mod not in query.mod:
            raise CommandError(
                f"{query_path.name} has no modality {mod!r} ({source}); it has "
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


_EXAMPLES = {
    "demo": """examples:
  scdx demo
  scdx demo --data multiome.h5mu --labels-key cell_type --out demo_multiome
  scdx demo --max-epochs 200 --diffusion-steps 20000 --n-channels 128 --accelerator gpu""",
    "train": """examples:
  scdx train multiome.h5mu --out model --labels-key cell_type --batch-key batch
  scdx train cite.h5mu --out model --modalities rna=gex,protein=adt --rna-layer counts""",
    "generate": """examples:
  scdx generate model --labels "T cell=500,B cell=100" --out cells.h5mu
  scdx generate model --n-cells 1000 --out cells.h5mu --sampler ddim --steps 50""",
    "translate": """examples:
  scdx translate model rna_only.h5ad --source rna --target atac --out atac.h5ad
  scdx translate model query.h5mu --source rna --target atac --out atac.h5ad --samples 5""",
}


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="scdx", description="scdx-scvi command line")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, argparse.ArgumentParser] = {}

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        commands[name] = sub.add_parser(
            name,
            help=summary,
            description=description,
            epilog=_EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return commands[name]

    def accelerator(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--accelerator",
            default="auto",
            choices=["auto", "cpu", "gpu"],
            help="device to run on (default: %(default)s, a GPU if there is one)",
        )

    defaults = DemoConfig()
    p = command(
        "demo",
        "run the end-to-end demo: train, generate, translate, score, report",
        "Train SCDX on paired cells (simulated by default, or --data), generate new cells of "
        "each cell type, translate held-out cells from one modality into the other in both "
        "directions, score both against the held-out cells and two controls (kNN regression "
        "and the mean profile), and write the model, the cells, figures, metrics.json and "
        "report.md to --out. A fifth of the cells is held out (chosen with --seed).",
    )
    p.add_argument(
        "--data",
        type=Path,
        metavar="FILE.h5mu",
        help="paired MuData with raw counts: RNA and ATAC and/or protein (default: simulated "
        "cells, see --n-cells)",
    )
    p.add_argument(
        "--labels-key",
        metavar="KEY",
        help="obs column with cell types; generation is conditioned on it (default: cell_type "
        "if the data has it)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=defaults.out,
        metavar="DIR",
        help="output folder; files of an earlier demo there are replaced (default: %(default)s)",
    )
    sizes = (
        ("--n-cells", "n_cells", "simulated cells"),
        ("--n-genes", "n_genes", "simulated genes"),
        ("--n-peaks", "n_peaks", "simulated ATAC peaks"),
    )
    for flag, name, what in sizes:
        p.add_argument(
            flag,
            type=_positive_int,
            default=getattr(defaults, name),
            metavar="N",
            help=f"{what}, without --data (default: %(default)s)",
        )
    p.add_argument(
        "--n-proteins",
        type=int,
        default=defaults.n_proteins,
        metavar="N",
        help="simulated proteins (a third modality), without --data (default: %(default)s)",
    )
    p.add_argument(
        "--architecture",
        default=defaults.architecture,
        choices=["small", "default", "large"],
        help="autoencoder size preset (default: %(default)s)",
    )
    p.add_argument(
        "--n-channels",
        type=_positive_int,
        default=defaults.n_channels,
        metavar="C",
        help="base width of the diffusion U-Net (default: %(default)s; scdx train uses 128)",
    )
    p.add_argument(
        "--max-epochs",
        type=_positive_int,
        default=defaults.max_epochs,
        metavar="N",
        help="maximum autoencoder epochs, with early stopping (default: %(default)s)",
    )
    p.add_argument(
        "--diffusion-steps",
        type=_positive_int,
        default=defaults.diffusion_steps,
        metavar="N",
        help="maximum diffusion optimiser steps, with early stopping (default: %(default)s)",
    )
    p.add_argument(
        "--n-generate",
        type=_positive_int,
        metavar="N",
        help="cells to generate, with the held-out cell-type composition (default: as many as "
        "the held-out cells)",
    )
    accelerator(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--no-figures", action="store_true", help="do not draw the figures")

    p = command(
        "train",
        "train SCDX on a paired .h5mu and save the model",
        "Read a paired MuData (RNA + ATAC and/or protein, raw counts), register it, train the "
        "autoencoder and then the latent diffusion, print a summary and save the model "
        "(without the data) to --out.",
    )
    p.add_argument("data", type=Path, metavar="DATA.h5mu", help="paired MuData to train on")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to save to")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    p.add_argument(
        "--labels-key",
        metavar="KEY",
        help="obs column with cell types; generation is conditioned on it (default: none)",
    )
    p.add_argument("--batch-key", metavar="KEY", help="obs column with the batch (default: none)")
    for m, what in (("rna", "RNA counts"), ("atac", "ATAC counts"), ("protein", "ADT counts")):
        p.add_argument(f"--{m}-layer", metavar="L", help=f"layer with the raw {what} (default: .X)")
    p.add_argument(
        "--modalities",
        type=_parse_modalities,
        metavar="KIND=NAME,...",
        help="which modality of the MuData is which, e.g. rna=rna,atac=peaks; kinds: rna, atac, "
        "protein, and labels/batch for a modality whose obs holds --labels-key/--batch-key "
        "(default: inferred from names such as rna, atac, protein, adt)",
    )
    p.add_argument(
        "--architecture",
        default="default",
        choices=["small", "default", "large"],
        help="size preset: small below 5k genes and 15k peaks, large above 50k genes or 200k "
        "peaks (default: %(default)s)",
    )
    p.add_argument(
        "--max-epochs",
        type=_positive_int,
        default=300,
        metavar="N",
        help="maximum autoencoder epochs, with early stopping (default: %(default)s)",
    )
    p.add_argument(
        "--diffusion-steps",
        type=_positive_int,
        default=100_000,
        metavar="N",
        help="maximum diffusion optimiser steps, with early stopping (default: %(default)s)",
    )
    accelerator(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")

    p = command(
        "generate",
        "generate paired cells with a trained model",
        "Load a model saved by scdx train (no data needed), sample new paired cells, of chosen "
        "cell types or with the training proportions, and write them as a MuData: counts per "
        "modality (ATAC as 0/1) with the training features, and the label of each cell in obs.",
    )
    p.add_argument("model", type=Path, metavar="DIR", help="model directory from scdx train")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--labels",
        type=_parse_label_counts,
        metavar="LABEL=N,...",
        help='cells per cell type, e.g. "T cell=500,B cell=100"',
    )
    what.add_argument(
        "--n-cells",
        type=_positive_int,
        metavar="N",
        help="number of cells, with labels drawn in the training proportions",
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE.h5mu", help="file to write")
    p.add_argument(
        "--sampler",
        default="dpm++2m",
        choices=["dpm++2m", "ddim", "ddpm"],
        help="sampler: dpm++2m (25 steps), ddim (100) or ddpm (1000) (default: %(default)s)",
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        metavar="N",
        help="denoiser evaluations (default: the sampler's, see --sampler)",
    )
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=1.0,
        metavar="W",
        help="classifier-free guidance: 1 the conditional model, 0 unconditional, above 1 a "
        "stronger label (default: %(default)s)",
    )
    accelerator(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")

    p = command(
        "translate",
        "translate one modality of query cells into another",
        "Load a model saved by scdx train and translate query cells from the source modality "
        "into the target (e.g. RNA to ATAC). The query is an AnnData holding only the source "
        "modality (features matched by name) or a MuData with the source modality. Writes an "
        "AnnData of the target: expression per 10k counts (RNA, protein) or accessibility "
        "probabilities (ATAC), with the query's obs.",
    )
    p.add_argument("model", type=Path, metavar="DIR", help="model directory from scdx train")
    p.add_argument(
        "query", type=Path, metavar="QUERY", help="query cells: a .h5ad (source only) or .h5mu"
    )
    p.add_argument(
        "--source",
        required=True,
        help="modality of the query: rna, atac, protein or its name in the MuData",
    )
    p.add_argument(
        "--target", required=True, help="modality to produce: rna, atac, protein or its name"
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE.h5ad", help="file to write")
    p.add_argument(
        "--method",
        default="learned",
        choices=["learned", "replacement", "guidance"],
        help="learned: the conditional the diffusion learned (fast); replacement or guidance: "
        "zero-shot from the joint, 1000 DDPM steps by default (default: %(default)s)",
    )
    p.add_argument(
        "--sampler",
        default="mean",
        choices=["mean", "dpm++2m", "ddim", "ddpm"],
        help="learned method: mean = the conditional-mean estimate (one evaluation), or a "
        "sampler that draws cells (default: %(default)s)",
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        metavar="N",
        help="denoiser evaluations (default: 1 for mean, 25 for the learned samplers, "
        "1000 for the zero-shot methods)",
    )
    p.add_argument(
        "--samples",
        type=_positive_int,
        default=1,
        metavar="N",
        help="sampled translations per cell (not with --sampler mean); with more than one, X is "
        "their mean and layers['variance'] their variance (default: %(default)s)",
    )
    p.add_argument(
        "--layer",
        metavar="L",
        help="layer of the query with the raw source values (default: .X for a .h5ad, the "
        "training layer for a .h5mu)",
    )
    accelerator(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    """Run the ``scdx`` command line.

    Parameters
    ----------
    argv
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    The exit status: 0 on success, 2 for a problem with the input (reported on stderr).
    """
    parser, commands = _build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    commands_run = {"demo": demo, "train": train, "generate": generate, "translate": translate}
    run = commands_run[args.command]
    try:
        return run(args)
    except (CommandError, *_USER_ERRORS) as error:
        print(f"{commands[args.command].prog}: error: {_message(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
