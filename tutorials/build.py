"""Execute the tutorial scripts and store them as notebooks with their outputs.

Each ``NN_name.py`` (jupytext "percent" format, the source of truth) is converted to a notebook,
executed in a fresh kernel with the full settings (``SCDX_TUTORIAL_QUICK`` unset) in a temporary
working folder, and written next to the script as ``NN_name.ipynb``; the documentation shows
these stored outputs. Usage::

    python tutorials/build.py                  # every tutorial
    python tutorials/build.py 02_generation    # some of them
    python tutorials/build.py --quick          # smoke run, notebooks are not written

Needs ``jupytext``, ``nbclient`` and ``ipykernel`` (``pip install -e ".[tutorials]"``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
#: Seconds one cell may run before the build fails.
CELL_TIMEOUT = 3600
#: Environment variable that shrinks every tutorial to a smoke run.
QUICK = "SCDX_TUTORIAL_QUICK"
#: Data of the CITE-seq tutorial unless ``SCDX_TUTORIAL_DATA`` says otherwise: the starter set
#: of the package's test data, in ``shared/data`` beside the repository.
CITE_STARTER = (
    HERE.parents[1] / "shared" / "data" / "neurips2021_bmmc_cite_starter"
    / "neurips2021_bmmc_cite_starter.h5mu"
)  # fmt: skip


def tutorial_scripts(names: list[str] | None = None) -> list[Path]:
    """Return the tutorial scripts (``NN_*.py``), all or those named (with or without ``.py``)."""
    scripts = sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))
    if not names:
        return scripts
    by_name = {p.stem: p for p in scripts}
    unknown = [n for n in names if n.removesuffix(".py") not in by_name]
    if unknown:
        raise SystemExit(f"Unknown tutorial(s) {unknown}; known: {sorted(by_name)}.")
    return [by_name[n.removesuffix(".py")] for n in names]


def execute(script: Path, quick: bool = False) -> tuple[nbformat.NotebookNode, float]:
    """Convert a tutorial script to a notebook and execute it; return it and the wall time."""
    notebook = jupytext.read(script)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    notebook.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    # The kernel inherits this process's environment. It runs in a temporary folder, so
    # relative paths would not resolve; figures go into the notebook whatever MPLBACKEND says;
    # tqdm's notice that ipywidgets is not installed is not part of any tutorial.
    os.environ.setdefault("SCDX_TUTORIAL_DATA", str(CITE_STARTER))
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["PYTHONWARNINGS"] = "ignore:IProgress not found:Warning"
    previous = os.environ.pop(QUICK, None)
    if quick:
        os.environ[QUICK] = "1"
    try:
        with tempfile.TemporaryDirectory(prefix=f"{script.stem}_") as workdir:
            client = NotebookClient(
                notebook,
                timeout=CELL_TIMEOUT,
                kernel_name="python3",
                resources={"metadata": {"path": workdir}},
                record_timing=False,
            )
            start = time.perf_counter()
            client.execute()
            seconds = time.perf_counter() - start
    finally:
        os.environ.pop(QUICK, None)
        if previous is not None:
            os.environ[QUICK] = previous
    return notebook, seconds


def drop_stderr(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove the stderr streams (library warnings, which print the paths of this machine)."""
    for cell in notebook.cells:
        if cell.get("cell_type") == "code":
            cell.outputs = [
                out
                for out in cell.get("outputs", [])
                if not (out.get("output_type") == "stream" and out.get("name") == "stderr")
            ]
    return notebook


def main(argv: list[str] | None = None) -> int:
    """Build the notebooks named on the command line (default: all)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="tutorials to build (default: all)")
    parser.add_argument(
        "--quick", action="store_true", help="run with SCDX_TUTORIAL_QUICK=1 and write nothing"
    )
    args = parser.parse_args(argv)
    for script in tutorial_scripts(args.names):
        print(f"{script.name}: executing", flush=True)
        notebook, seconds = execute(script, quick=args.quick)
        if not args.quick:
            jupytext.write(drop_stderr(notebook), script.with_suffix(".ipynb"), fmt="ipynb")
        print(f"{script.name}: done in {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
