"""The optimisers: AdamW, fused where the device has the kernel, with the stage-1 groups."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

#: Device types with a fused AdamW kernel (one pass over each parameter instead of a loop of
#: element-wise operations: about 10 x faster on a CPU for the 10^8 weights of a 200k-peak
#: autoencoder, with the same update up to rounding).
FUSED_DEVICES = ("cpu", "cuda")


def adamw(params: Iterable, **kwargs) -> torch.optim.AdamW:
    """Return :class:`torch.optim.AdamW` over ``params`` (parameters or groups), fused if possible.

    The fused implementation is used when every parameter is a floating-point tensor on a device
    of :data:`FUSED_DEVICES`; otherwise the default implementation.
    """
    params = list(params)
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    fused = bool(tensors) and all(
        p.device.type in FUSED_DEVICES and p.is_floating_point() for p in tensors
    )
    optimizer = torch.optim.AdamW(params, fused=fused or None, **kwargs)
    optimizer.register_step_post_hook(_free_gradients)
    return optimizer


def _free_gradients(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
    """Drop the gradients once the step has used them (``zero_grad(set_to_none=True)``).

    Lightning zeroes them only after the next training forward pass, so without this the
    last gradients (one copy of the weights) would stay allocated through that forward pass
    and through every validation loop, on top of their activations.
    """
    optimizer.zero_grad(set_to_none=True)


def autoencoder_optimizer(
    dispersions: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float,
    dispersion_lr: float | None,
    eps: float = 1e-8,
) -> Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]:
    """Return an optimiser creator for :class:`scvi.train.TrainingPlan` (``optimizer="Custom"``).

    The returned creator builds AdamW (:func:`adamw`) over the parameters it is given, with the
    ``dispersions`` among them in a second group: learning rate ``dispersion_lr`` and no weight
    decay (with ``dispersion_lr=None``, one group for all, as in the reference). Adam
    moves a parameter by about its learning rate per step, so a per-feature log-dispersion
    started at a random value needs a rate of this order to reach its fit within the few
    hundred to few thousand steps of stage 1; at the network's rate it stays where it started.
    Weight decay would pull the dispersions to 1 (log-dispersion 0), a bias, not a
    regularisation of the network.

    Parameters
    ----------
    dispersions
        The dispersion parameters (e.g. ``SCDXModule.dispersion_parameters()``).
    lr
        Learning rate of every other parameter.
    weight_decay
        AdamW weight decay of every other parameter.
    dispersion_lr
        Learning rate of the dispersions (0 keeps them fixed; ``None``: no group of their own).
    eps
        Adam's epsilon.
    """
    if dispersion_lr is not None and not float(dispersion_lr) >= 0.0:
        raise ValueError(f"dispersion_lr must be a non-negative number, got {dispersion_lr!r}.")
    ids = set() if dispersion_lr is None else {id(p) for p in dispersions}

    def create(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        params = list(params)
        groups = [
            {"params": [p for p in params if id(p) not in ids]},
            {
                "params": [p for p in params if id(p) in ids],
                "lr": dispersion_lr,
                "weight_decay": 0.0,
            },
        ]
        return adamw([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay, eps=eps)

    return create


def release_training_state(trainer) -> None:
    """Free what a finished run leaves in memory: the optimisers' state and the last gradients.

    scvi-tools keeps the trainer on the model (``model.trainer``) and with it each optimiser:
    AdamW's two moment estimates are two copies of the parameters (moved to host memory when a
    GPU run ends), and the last gradients a third. A later run builds new optimisers, so
    nothing reads them again.
    """
    for optimizer in trainer.optimizers:
        optimizer.state.clear()
        optimizer.zero_grad(set_to_none=True)
