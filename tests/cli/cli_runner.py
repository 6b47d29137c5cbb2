"""Run the ``scdx`` command line in-process, for the tests of this folder."""

from __future__ import annotations

from scdx_scvi import cli


def run(*argv) -> int:
    """Exit status of ``scdx ARGV`` run in-process (argparse errors raise SystemExit)."""
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        return exit_.code
