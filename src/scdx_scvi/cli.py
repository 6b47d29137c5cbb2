"""The ``scdx`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np

logger = logging.getLogger("scdx_scvi")

#: Dataset of ``scdx demo`` when ``--data`` is not given (found relative to the working directory).
DEFAULT_DEMO_DATA = Path(
    "../shared/data/neurips2021_bmmc_multiome_starter/neurips2021_bmmc_multiome_starter.h5mu"
)


def _load_demo_data(path: Path | None):
    import mudata as md
    import scvi

    if path is not None:
        if not path.exists():
            raise SystemExit(f"scdx demo: no such file: {path}")
        return md.read_h5mu(path), path.name
    if DEFAULT_DEMO_DATA.exists():
        return md.read_h5mu(DEFAULT_DEMO_DATA), DEFAULT_DEMO_DATA.name
    logger.info("%s not found; using scvi-tools' synthetic RNA+ATAC data.", DEFAULT_DEMO_DATA)
    mdata = scvi.data.synthetic_iid(n_proteins=0, return_mudata=True)
    return mdata, "scvi.data.synthetic_iid (RNA+ATAC)"


def demo(args: argparse.Namespace) -> int:
    """Train the autoencoder on a small dataset and print held-out reconstruction metrics."""
    import scvi

    from scdx_scvi import SCDX
    from scdx_scvi.metrics import reconstruction_scores

    scvi.settings.seed = args.seed
    mdata, name = _load_demo_data(args.data)
    test = np.random.default_rng(0).random(mdata.n_obs) < 0.2
    train, held_out = mdata[~test].copy(), mdata[test].copy()
    print(f"data: {name}: {train.n_obs} training and {held_out.n_obs} held-out cells")
    for mod, adata in mdata.mod.items():
        print(f"  {mod}: {adata.n_vars} features")

    SCDX.setup_mudata(train)
    model = SCDX(train, architecture=args.architecture)
    start = time.perf_counter()
    model.train_autoencoder(max_epochs=args.max_epochs, accelerator=args.accelerator)
    seconds = time.perf_counter() - start
    print(f"trained {len(model.history['train_loss'])} epochs in {seconds:.1f} s")

    nll = model.get_reconstruction_error(held_out)
    scores = reconstruction_scores(
        {m: held_out[mod].X for m, mod in model._modality_names.items()},
        model.get_normalized_modalities(held_out, library_size=1e4),
    )
    print("\nheld-out reconstruction")
    for key, value in {**nll, **scores}.items():
        print(f"  {key:<32} {value:10.4f}" if isinstance(value, float) else f"  {key:<32} {value}")
    if args.out is not None:
        model.save(args.out, overwrite=True)
        print(f"\nmodel saved to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``scdx`` command line."""
    parser = argparse.ArgumentParser(prog="scdx", description="scdx-scvi command line")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train on a small dataset and report reconstruction")
    p.add_argument("--data", type=Path, default=None, help="a paired .h5mu (default: demo set)")
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--architecture", default="small", choices=["small", "default", "large"])
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("demo_output/model"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
