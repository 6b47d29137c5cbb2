from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from helpers import QUIET, TINY

from scdx_scvi import SCDX
from scdx_scvi.train import ModalityEarlyStopping
from scdx_scvi.train._modality_stopping import early_stopping_callbacks

MODS = ("rna", "protein")


def _model(make_mudata, setup_kwargs) -> SCDX:
    mdata = make_mudata(MODS)
    SCDX.setup_mudata(mdata, **setup_kwargs(MODS))
    return SCDX(mdata, **TINY)


def _trainable(module, modality: str) -> set[bool]:
    parts = (module.encoders[modality], module.decoders[modality], module.likelihoods[modality])
    return {p.requires_grad for part in parts for p in part.parameters()}


def test_each_modality_freezes_when_its_own_loss_stalls(make_mudata, setup_kwargs):
    module = _model(make_mudata, setup_kwargs).module
    pl_module = SimpleNamespace(module=module)
    callback = ModalityEarlyStopping(list(MODS), patience=2)
    trainer = SimpleNamespace(
        sanity_checking=False, should_stop=False, current_epoch=0, callback_metrics={}
    )
    # RNA stalls after epoch 1, protein improves until epoch 4, then stalls.
    rna = [5.0, 4.0, 4.5, 4.2, 4.1, 3.9, 4.4, 4.0]
    protein = [3.0, 2.0, 1.5, 1.2, 1.0, 1.1, 1.2, 1.3]
    for epoch, (r, p) in enumerate(zip(rna, protein, strict=True)):
        trainer.current_epoch = epoch
        trainer.callback_metrics = {
            "reconstruction_loss_rna_validation": torch.tensor(r),
            "reconstruction_loss_protein_validation": torch.tensor(p),
        }
        callback.on_validation_end(trainer, pl_module)
        if epoch == 3:
            assert callback.stopped_epoch == {"rna": 3}
            assert _trainable(module, "rna") == {False} and not module.decoders["rna"].training
            assert _trainable(module, "protein") == {True} and not trainer.should_stop
            callback.on_train_epoch_start(trainer, pl_module)  # after Lightning's model.train()
            assert not module.encoders["rna"].training
        if trainer.should_stop:
            break
    # A later improvement of a frozen modality changes nothing; protein froze at epoch 6.
    assert callback.stopped_epoch == {"rna": 3, "protein": 6} and epoch == 6
    assert callback.best == {"rna": 4.0, "protein": 1.0}
    callback.on_fit_end(trainer, pl_module)
    assert _trainable(module, "rna") == _trainable(module, "protein") == {True}


def test_a_modality_without_validation_cells_does_not_hold_training_open(make_mudata, setup_kwargs):
    module = _model(make_mudata, setup_kwargs).module
    callback = ModalityEarlyStopping(list(MODS), patience=1)
    trainer = SimpleNamespace(sanity_checking=False, should_stop=False, current_epoch=0)
    for epoch, value in enumerate((2.0, 3.0)):
        trainer.current_epoch = epoch
        trainer.callback_metrics = {"reconstruction_loss_rna_validation": torch.tensor(value)}
        callback.on_validation_end(trainer, SimpleNamespace(module=module))
    assert callback.stopped_epoch == {"rna": 1} and trainer.should_stop
    assert _trainable(module, "protein") == {True}


def test_per_modality_early_stopping_trains_and_stops(make_mudata, setup_kwargs):
    model = _model(make_mudata, setup_kwargs)
    # Learning rates of 0 cannot improve either loss: patience 2 freezes both after 3 epochs.
    model.train_autoencoder(
        max_epochs=50, lr=0.0, dispersion_lr=0.0, early_stopping="per_modality",
        early_stopping_patience=2, **QUIET,
    )  # fmt: skip
    assert len(model.history["reconstruction_loss_validation"]) == 3
    assert model.is_trained_
    assert all(p.requires_grad for p in model.module.encoders.parameters())


def test_early_stopping_option_is_checked_and_user_callbacks_kept():
    callbacks = [object()]
    kwargs = {"callbacks": callbacks}
    assert early_stopping_callbacks("per_modality", list(MODS), 3, kwargs) is False
    assert kwargs["callbacks"][0] is callbacks[0] and len(callbacks) == 1  # not mutated
    assert isinstance(kwargs["callbacks"][1], ModalityEarlyStopping)
    ddp = {"strategy": "ddp"}
    assert early_stopping_callbacks("per_modality", list(MODS), 3, ddp) is False
    assert "callbacks" not in ddp
    assert early_stopping_callbacks(True, list(MODS), 3, {}) is True
    with pytest.raises(ValueError, match="`early_stopping` must be True, False or"):
        early_stopping_callbacks("modality", list(MODS), 3, {})
