from __future__ import annotations

import pytest
import torch

from scdx_scvi import SCDX
from scdx_scvi.train import adamw, autoencoder_optimizer


def test_dispersions_get_their_own_rate_and_no_weight_decay():
    net = torch.nn.Linear(3, 2)
    theta = torch.nn.Parameter(torch.zeros(4))
    frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
    create = autoencoder_optimizer([theta, frozen], lr=1e-3, weight_decay=1e-4, dispersion_lr=0.1)
    optimizer = create([*net.parameters(), theta])  # the plan passes trainable parameters only
    network, dispersions = optimizer.param_groups
    assert isinstance(optimizer, torch.optim.AdamW)
    assert network["lr"] == 1e-3 and network["weight_decay"] == 1e-4
    assert [id(p) for p in dispersions["params"]] == [id(theta)]
    assert dispersions["lr"] == 0.1 and dispersions["weight_decay"] == 0.0
    # without dispersions among the parameters: one group
    assert len(create(net.parameters()).param_groups) == 1
    with pytest.raises(ValueError, match="dispersion_lr must be a non-negative"):
        autoencoder_optimizer([theta], lr=1e-3, weight_decay=0.0, dispersion_lr=-1.0)


def test_dispersion_rate_lets_the_dispersions_move(make_mudata, setup_kwargs, accelerator):
    """At the network's rate a dispersion moves about 5e-4 per step; at 0.1 it moves ~200 x more."""
    mods = ("rna", "protein")
    moved = {}
    for name, kwargs in (
        ("network rate", {"plan_kwargs": {"optimizer": "AdamW"}}),
        ("dispersion rate", {"dispersion_lr": 0.1}),
    ):
        mdata = make_mudata(mods)
        SCDX.setup_mudata(mdata, **setup_kwargs(mods))
        model = SCDX(mdata)
        before = [p.detach().clone() for p in model.module.dispersion_parameters()]
        model.train_autoencoder(
            max_epochs=2, early_stopping=False, accelerator=accelerator, enable_progress_bar=False,
            **kwargs,
        )  # fmt: skip
        after = model.module.dispersion_parameters()
        moved[name] = max(
            float((a.detach().cpu() - b).abs().max()) for a, b in zip(after, before, strict=True)
        )
        steps = model.trainer.global_step
    assert moved["network rate"] <= 5e-4 * steps * 1.01
    assert moved["dispersion rate"] > 20 * moved["network rate"]


def test_adamw_is_fused_on_cpu_and_falls_back_elsewhere():
    on_cpu = torch.nn.Parameter(torch.zeros(3))
    assert adamw([on_cpu], lr=1e-3).defaults["fused"] is True
    assert adamw([{"params": [on_cpu], "lr": 0.1}], lr=1e-3).defaults["fused"] is True
    on_meta = torch.nn.Parameter(torch.zeros(3, device="meta"))
    assert not adamw([on_cpu, on_meta], lr=1e-3).defaults["fused"]


def test_adamw_frees_the_gradients_after_each_step():
    """The step drops the gradients it used; the update is the one AdamW makes without that."""
    start = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    weights = [torch.nn.Parameter(start.clone()) for _ in range(2)]
    ours, plain = adamw([weights[0]], lr=0.1), torch.optim.AdamW([weights[1]], lr=0.1, fused=True)
    for _ in range(3):
        for w, optimizer in ((weights[0], ours), (weights[1], plain)):
            assert w.grad is None or optimizer is plain
            optimizer.zero_grad()
            w.pow(2).sum().backward()
            optimizer.step()
    assert weights[0].grad is None and weights[1].grad is not None
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_reference_rate_puts_the_dispersions_with_the_network():
    net = torch.nn.Linear(3, 2)
    theta = torch.nn.Parameter(torch.zeros(4))
    create = autoencoder_optimizer([theta], lr=1e-3, weight_decay=1e-4, dispersion_lr=None)
    (group,) = create([*net.parameters(), theta]).param_groups
    assert group["lr"] == 1e-3 and group["weight_decay"] == 1e-4 and len(group["params"]) == 3


def test_training_leaves_no_optimizer_state_or_gradients(make_mudata, setup_kwargs, accelerator):
    """AdamW's moments and the last gradients (3 x the parameters) are freed after each stage."""
    mods = ("rna", "atac")
    mdata = make_mudata(mods)
    SCDX.setup_mudata(mdata, **setup_kwargs(mods))
    model = SCDX(mdata, architecture="small", n_channels=16)
    quiet = {"accelerator": accelerator, "enable_progress_bar": False}
    model.train_autoencoder(max_epochs=1, **quiet)
    assert all(not optimizer.state for optimizer in model.trainer.optimizers)
    model.train_diffusion(max_steps=3, **quiet)
    assert all(not optimizer.state for optimizer in model.trainer.optimizers)
    assert all(p.grad is None for p in model.module.parameters())
    model.train_autoencoder(max_epochs=1, **quiet)  # a new run builds its optimiser again
    assert model.trainer.global_step > 0
