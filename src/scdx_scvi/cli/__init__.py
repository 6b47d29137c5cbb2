"""The ``scdx`` command line: ``demo``, ``train``, ``generate`` and ``translate``.

:func:`main` parses the arguments and runs a command; the demo (:func:`run_demo`, with its
settings :class:`DemoConfig`) is imported only when ``scdx demo`` runs it.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TYPE_CHECKING

from ._commands import COMMANDS, CommandError, message
from ._inputs import DemoConfig, DemoInputError
from ._parser import build_parser, demo_config

if TYPE_CHECKING:
    from ._demo import DemoResult

#: Exceptions that the package raises for problems with the user's input.
USER_ERRORS = (CommandError, DemoInputError, ValueError, KeyError, TypeError, OSError)


def run_demo(config: DemoConfig, command: str = "scdx demo") -> DemoResult:
    """Run the end-to-end demo (see :func:`scdx_scvi.cli._demo.run_demo`)."""
    from ._demo import run_demo as run

    return run(config, command)


def main(argv: list[str] | None = None) -> int:
    """Run the ``scdx`` command line.

    Parameters
    ----------
    argv
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    The exit status: 0 on success, 2 for a problem with the input (one line on stderr).
    """
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as error:
        print(f"{commands[args.command].prog}: error: {message(error)}", file=sys.stderr)
        return 2


__all__ = ["DemoConfig", "build_parser", "demo_config", "main", "run_demo"]
