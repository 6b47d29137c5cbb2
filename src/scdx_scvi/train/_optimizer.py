"""The stage-1 optimiser: AdamW, with the likelihoods' dispersions in a group of their own."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


def autoencoder_optimizer(
    dispersions: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float,
    dispersion_lr: float,
    eps: float = 1e-8,
) -> Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]:
    """Return an optimiser creator for :class:`scvi.train.TrainingPlan` (``optimizer="Custom"``).

    The returned creator builds AdamW over the parameters it is given, with the ``dispersions``
    among them in a second group: learning rate ``dispersion_lr`` and no weight decay. Adam
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
        Learning rate of the dispersions (0 keeps them fixed).
    eps
        Adam's epsilon.
    """
    if not float(dispersion_lr) >= 0.0:
        raise ValueError(f"dispersion_lr must be a non-negative number, got {dispersion_lr!r}.")
    ids = {id(p) for p in dispersions}

    def create(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        params = list(params)
        groups = [
            {"params": [p for p in params if id(p) not in ids]},
            {
                "params": [p for p in params if id(p) in ids],
                "lr": float(dispersion_lr),
                "weight_decay": 0.0,
            },
        ]
        return torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay, eps=eps
        )

    return create
