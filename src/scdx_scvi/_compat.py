"""Private scvi-tools names, imported in one place (1.4.2 to 1.5.x), and third-party workarounds.

The workarounds undo behaviour of scvi-tools or Lightning that the package cannot change.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from scvi.data._constants import (
    _FIELD_REGISTRIES_KEY,
    _SCVI_UUID_KEY,
    _SETUP_ARGS_KEY,
    _STATE_REGISTRY_KEY,
)
from scvi.model._utils import _get_batch_code_from_category
from scvi.model.base._constants import SAVE_KEYS
from scvi.train import TrainRunner
from scvi.utils import setup_anndata_dsp
from scvi.utils._docstrings import devices_dsp

__all__ = [
    "SAVE_KEYS",
    "_FIELD_REGISTRIES_KEY",
    "_SCVI_UUID_KEY",
    "_SETUP_ARGS_KEY",
    "_STATE_REGISTRY_KEY",
    "SignalSafeTrainRunner",
    "_get_batch_code_from_category",
    "devices_dsp",
    "restore_sigint",
    "setup_anndata_dsp",
]


@contextmanager
def restore_sigint() -> Iterator[None]:
    """Put back the SIGINT (Ctrl-C) handler found on entry when the block exits, however."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can have or change signal handlers
        return
    previous = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if previous is not None:  # None: installed outside Python; nothing to put back
            signal.signal(signal.SIGINT, previous)


class SignalSafeTrainRunner(TrainRunner):
    """:class:`scvi.train.TrainRunner` after which Ctrl-C still works.

    On a KeyboardInterrupt, Lightning (``lightning/pytorch/trainer/call.py``) sets SIGINT to
    ``SIG_IGN`` for its shutdown and calls ``sys.exit(1)``. Wherever that exit is caught (a
    notebook, an interactive session, a caller's ``except SystemExit``) the process then ignores
    Ctrl-C for good. This runner restores the previous handler and raises the KeyboardInterrupt
    that the user asked for instead of the exit.
    """

    def __call__(self):
        with restore_sigint():
            try:
                return super().__call__()
            except SystemExit as exit_:
                if getattr(self.trainer, "interrupted", False):
                    raise KeyboardInterrupt("Training was interrupted (Ctrl-C).") from exit_
                raise
