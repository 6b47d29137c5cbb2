"""Run the whole benchmark suite on one dataset: reconstruction, generation, translation.

The generation run saves its trained models (SCDX with the reference's joint-only diffusion, and
MultiVI) under ``--models``, and the translation run reuses them, so the three scripts compare
the same autoencoder and the same peer. Results go to ``benchmarks/results/*_<dataset>.json``.

Usage::

    python benchmarks/run.py --dataset snareseq_mop
    python benchmarks/run.py --dataset neurips2021_bmmc_cite_starter --architecture small
    python benchmarks/run.py --quick       # a smoke run of every script
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_mop")
    parser.add_argument("--architecture", default="default")
    parser.add_argument("--ae-epochs", type=int, default=25)
    parser.add_argument("--peer-epochs", type=int, default=100)
    parser.add_argument("--diffusion-steps", type=int, default=4000)
    parser.add_argument("--n-channels", type=int, default=64)
    parser.add_argument("--models", default=str(HERE / "models"), help="where models are saved")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    models = Path(args.models)
    common = ["--dataset", args.dataset]
    quick = ["--quick"] if args.quick else []
    sizes = ["--architecture", args.architecture, "--n-channels", str(args.n_channels)]
    multimodal_atac = args.dataset not in {"neurips2021_bmmc_cite_starter", "scvi_pbmc_cite_tests",
                                           "eccite_citefuse"}  # fmt: skip
    steps = [
        ["autoencoder_reconstruction.py", *common, "--architecture", args.architecture,
         "--max-epochs", str(args.ae_epochs), "--peer-max-epochs", str(args.peer_epochs),
         "--configs", "peer,faithful,log1p+per_feature"] + (["--max-epochs", "2",
         "--peer-max-epochs", "2", "--architecture", "small"] if args.quick else []),
        ["generation.py", *common, *sizes, "--ae-epochs", str(args.ae_epochs),
         "--diffusion-steps", str(args.diffusion_steps), "--peer-epochs", str(args.peer_epochs),
         "--save-dir", str(models), *quick],
        ["translation.py", *common, *sizes, "--ae-epochs", str(args.ae_epochs),
         "--diffusion-steps", str(args.diffusion_steps), "--peer-epochs", str(args.peer_epochs),
         *quick, *(["--base-model", str(models / f"{args.dataset}_faithful")]
                   if not args.quick else []),
         *(["--peer-model", str(models / f"{args.dataset}_multivi")]
           if multimodal_atac and not args.quick else [])],
    ]  # fmt: skip
    for step in steps:
        print("+ python benchmarks/" + " ".join(step), flush=True)
        subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]], check=True)


if __name__ == "__main__":
    main()
