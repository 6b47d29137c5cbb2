"""The ``scdx`` argument parser, built from the public signatures and :class:`DemoConfig`.

Defaults and choices are read, not restated: the demo's options come from the fields of
:class:`~scdx_scvi.cli.DemoConfig`, the training defaults from :meth:`scdx_scvi.SCDX.train`, the
samplers and their step counts from :data:`scdx_scvi.diffusion.SAMPLERS`, the size presets from
:data:`scdx_scvi.module.PRESETS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from pathlib import Path

from ._inputs import DemoConfig

_MODALITY_KEYS = {
    "rna": "rna_layer",
    "atac": "atac_layer",
    "protein": "protein_layer",
    "labels": "labels_key",
    "batch": "batch_key",
}
_LABEL_COUNT = re.compile(r"\s*(.+?)\s*=\s*(\d+)\s*(?:,|$)")
_ACCELERATORS = ["auto", "cpu", "gpu"]

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


def _int_at_least(minimum: int | None):
    """Make an argparse type: a whole number of at least ``minimum`` (any for ``None``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or (minimum is not None and value < minimum):
            bound = "" if minimum is None else f" of at least {minimum}"
            raise argparse.ArgumentTypeError(f"expected a whole number{bound}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)


def _demo_options(p: argparse.ArgumentParser) -> None:
    """One option per :class:`DemoConfig` field, with the field's default."""
    from scdx_scvi.module import PRESETS

    for f in dataclasses.fields(DemoConfig):
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        if f.type == "bool":  # on by default: the flag turns it off
            p.add_argument(f"--no-{f.name}", dest=f.name, action="store_false", help=meta["help"])
        elif f.name == "accelerator":
            p.add_argument(flag, default=f.default, choices=_ACCELERATORS, help=meta["help"])
        elif f.name == "architecture":
            p.add_argument(flag, default=f.default, choices=list(PRESETS), help=meta["help"])
        else:
            kind = {"int": _int_at_least(meta["minimum"]), "int | None": _positive_int}
            kind |= {"Path": Path, "Path | None": Path}
            p.add_argument(
                flag, type=kind.get(f.type), default=f.default, metavar=meta["metavar"],
                help=meta["help"],
            )  # fmt: skip


def demo_config(args: argparse.Namespace) -> DemoConfig:
    """Build the settings of the demo from the parsed ``scdx demo`` options."""
    return DemoConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig)})


def _sampler_help(names: list[str]) -> str:
    from scdx_scvi.diffusion import SAMPLERS

    steps = [f"{n} ({SAMPLERS[n].default_steps or 'all'} steps)" for n in names]
    return ", ".join(steps)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """Build the ``scdx`` parser; return it and the parser of each command."""
    from scdx_scvi import SCDX
    from scdx_scvi.diffusion import SAMPLERS, MeanSampler
    from scdx_scvi.module import PRESETS

    parser = argparse.ArgumentParser(prog="scdx", description="scdx-scvi command line")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, argparse.ArgumentParser] = {}

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        commands[name] = sub.add_parser(
            name, help=summary, description=description, epilog=_EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        return commands[name]

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--accelerator", default="auto", choices=_ACCELERATORS,
            help="device to run on (default: %(default)s, a GPU if there is one)",
        )  # fmt: skip
        p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")

    p = command(
        "demo",
        "run the end-to-end demo: train, generate, translate, score, report",
        "Train SCDX on paired cells (simulated by default, or --data), generate new cells of "
        "each cell type, translate held-out cells from one modality into the other in both "
        "directions, score both against the held-out cells, three controls (kNN regression, "
        "ridge regression and the mean profile) and a real-vs-real floor, and write the model, "
        "the cells, figures, metrics.json and report.md to --out. A fifth of the cells is held "
        "out (chosen with --seed).",
    )
    _demo_options(p)

    train = inspect.signature(SCDX.train).parameters
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
    _backed(p, "DATA.h5mu")
    p.add_argument(
        "--labels-key", metavar="KEY",
        help="obs column with cell types; generation is conditioned on it (default: none)",
    )  # fmt: skip
    p.add_argument("--batch-key", metavar="KEY", help="obs column with the batch (default: none)")
    for m, what in (("rna", "RNA counts"), ("atac", "ATAC counts"), ("protein", "ADT counts")):
        p.add_argument(f"--{m}-layer", metavar="L", help=f"layer with the raw {what} (default: .X)")
    p.add_argument(
        "--modalities", type=_parse_modalities, metavar="KIND=NAME,...",
        help="which modality of the MuData is which, e.g. rna=rna,atac=peaks; kinds: rna, atac, "
        "protein, and labels/batch for a modality whose obs holds --labels-key/--batch-key "
        "(default: inferred from names such as rna, atac, protein, adt)",
    )  # fmt: skip
    p.add_argument(
        "--architecture", default=inspect.signature(SCDX).parameters["architecture"].default,
        choices=list(PRESETS), help="size preset: small below 5k genes and 15k peaks, large "
        "above 50k genes or 200k peaks (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-epochs", type=_positive_int, default=train["max_epochs"].default, metavar="N",
        help="maximum autoencoder epochs, with early stopping (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--diffusion-steps", type=_positive_int, default=train["max_steps_diffusion"].default,
        metavar="N",
        help="maximum diffusion optimiser steps, with early stopping (default: %(default)s)",
    )  # fmt: skip
    common(p)

    drawing = [n for n, cls in SAMPLERS.items() if not cls.zero_shot and cls is not MeanSampler]
    generate = inspect.signature(SCDX.generate).parameters
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
        "--labels", type=_parse_label_counts, metavar="LABEL=N,...",
        help='cells per cell type, e.g. "T cell=500,B cell=100"',
    )  # fmt: skip
    what.add_argument(
        "--n-cells", type=_positive_int, metavar="N",
        help="number of cells, with labels drawn in the training proportions",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, metavar="FILE.h5mu", help="file to write")
    p.add_argument(
        "--sampler", default=generate["sampler"].default, choices=drawing,
        help=f"sampler: {_sampler_help(drawing)} (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--steps", type=_positive_int, metavar="N",
        help="denoiser evaluations (default: the sampler's, see --sampler)",
    )  # fmt: skip
    p.add_argument(
        "--guidance-scale", type=float, default=generate["guidance_scale"].default, metavar="W",
        help="classifier-free guidance: 1 the conditional model, 0 unconditional, above 1 a "
        "stronger label (default: %(default)s)",
    )  # fmt: skip
    common(p)

    zero_shot = [n for n, cls in SAMPLERS.items() if cls.zero_shot]
    learned = [n for n, cls in SAMPLERS.items() if not cls.zero_shot]
    translate = inspect.signature(SCDX.get_translated_modality).parameters
    p = command(
        "translate",
        "translate one modality of query cells into another",
        "Load a model saved by scdx train and translate query cells from the source modality "
        "into the target (e.g. RNA to ATAC). The query is an AnnData holding only the source "
        "modality (features matched by name) or a MuData with the source modality. Writes an "
        "AnnData of the target: expression per 10k counts (RNA, protein; see --expected) or "
        "accessibility probabilities (ATAC), with the query's obs.",
    )
    p.add_argument("model", type=Path, metavar="DIR", help="model directory from scdx train")
    p.add_argument(
        "query", type=Path, metavar="QUERY", help="query cells: a .h5ad (source only) or .h5mu"
    )
    p.add_argument(
        "--source", required=True,
        help="modality of the query: rna, atac, protein or its name in the MuData",
    )  # fmt: skip
    p.add_argument(
        "--target", required=True, help="modality to produce: rna, atac, protein or its name"
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE.h5ad", help="file to write")
    p.add_argument(
        "--method", default=translate["method"].default, choices=[*dict.fromkeys(
            [translate["method"].default, *zero_shot])],
        help="learned: the conditional the diffusion learned (fast); zero-shot from the joint: "
        f"{_sampler_help(zero_shot)} (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--sampler", default=translate["sampler"].default, choices=learned,
        help="learned method: mean = the conditional-mean estimate, or a sampler that draws "
        f"cells: {_sampler_help(learned)} (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--steps", type=_positive_int, metavar="N",
        help="denoiser evaluations (default: the sampler's or the method's, see above)",
    )  # fmt: skip
    p.add_argument(
        "--samples", type=_positive_int, default=translate["n_samples"].default, metavar="N",
        help="sampled translations per cell (not with --sampler mean); with more than one, X is "
        "their mean and layers['variance'] their variance (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--expected", default=translate["expected"].default, choices=["log1p", "counts"],
        help="RNA and protein: log1p = the expected log1p value (through expm1; for analyses "
        "on the log1p scale), counts = the expected counts per 10k (for sums and means over "
        "cells) (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--layer", metavar="L",
        help="layer of the query with the raw source values (default: .X for a .h5ad, the "
        "training layer for a .h5mu)",
    )  # fmt: skip
    _backed(p, "QUERY")
    common(p)
    return parser, commands


def _backed(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--backed", action="store_true",
        help=f"read {what} backed: the counts stay on disk and only the rows in use are read "
        "(for data larger than memory; slower per epoch)",
    )  # fmt: skip
