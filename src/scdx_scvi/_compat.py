"""Private scvi-tools names, imported in one place (1.4.2 to 1.5.x), and third-party workarounds.

The workarounds undo behaviour of scvi-tools or Lightning that the package cannot change.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from lightning.pytorch.strategies import DDPStrategy, Strategy, StrategyRegistry
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


class GlooSafeDDPStrategy(DDPStrategy):
    """Lightning's :class:`~lightning.pytorch.strategies.DDPStrategy`, with metric sync on CPU.

    scvi-tools' ``TrainingPlan`` logs its metrics under :func:`torch.inference_mode` and Lightning
    validates under it; the gloo backend (CPU) cannot write into such tensors
    (pytorch/pytorch#86830), so the epoch-end sync of the logged metrics failed. They are
    cloned before they are reduced.
    """

    def reduce(self, tensor, group=None, reduce_op="mean"):
        if isinstance(tensor, torch.Tensor) and tensor.is_inference():
            tensor = tensor.clone()
        return super().reduce(tensor, group=group, reduce_op=reduce_op)


def resolve_strategy(strategy: str | Strategy) -> str | Strategy:
    """Return a fresh :class:`GlooSafeDDPStrategy` for the name of a Lightning DDP strategy.

    Other names and strategy objects are returned as given (an object serves one trainer only,
    so a name is what gives each training stage its own). DDP that starts its processes by
    spawning or forking (``"ddp_spawn"``, ``"ddp_notebook"``) is refused: the trained state
    that SCDX keeps (steps, history) stays in those processes.
    """
    if not isinstance(strategy, str) or strategy not in StrategyRegistry:
        return strategy
    entry = StrategyRegistry[strategy]
    if entry["strategy"] is not DDPStrategy:
        return strategy
    params = entry["init_params"]
    if params.get("start_method", "popen") != "popen":
        raise ValueError(
            f"`strategy={strategy!r}` trains in processes that it spawns or forks, from which "
            "SCDX cannot take the training state back. Use `strategy='ddp'` (or "
            "'ddp_find_unused_parameters_true') in a script run with `python script.py`."
        )
    return GlooSafeDDPStrategy(**params)


class SignalSafeTrainRunner(TrainRunner):
    """:class:`scvi.train.TrainRunner` after which Ctrl-C still works.

    On a KeyboardInterrupt, Lightning (``lightning/pytorch/trainer/call.py``) sets SIGINT to
    ``SIG_IGN`` for its shutdown and calls ``sys.exit(1)``. Wherever that exit is caught (a
    notebook, an interactive session, a caller's ``except SystemExit``) the process then ignores
    Ctrl-C for good. This runner restores the previous handler and raises the KeyboardInterrupt
    that the user asked for instead of the exit. A ``strategy`` goes through
    :func:`resolve_strategy`.
    """

    def __init__(self, *args, **trainer_kwargs):
        if "strategy" in trainer_kwargs:
            trainer_kwargs["strategy"] = resolve_strategy(trainer_kwargs["strategy"])
        super().__init__(*args, **trainer_kwargs)

    def __call__(self):
        with restore_sigint():
            try:
                return super().__call__()
            except SystemExit as exit_:
                if getattr(self.trainer, "interrupted", False):
                    raise KeyboardInterrupt("Training was interrupted (Ctrl-C).") from exit_
                raise
