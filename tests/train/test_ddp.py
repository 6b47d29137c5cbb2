"""Multi-process training (DDP, two CPU processes with the gloo backend) of both stages.

Lightning's ``strategy="ddp"`` starts the other processes by running the calling script
again, so the test runs this file as a script in a subprocess: every process trains, saves
and reports; the test then checks the reports and loads the saved model in a fresh process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mudata as md
import numpy as np
import pytest
import scvi
import torch
from helpers import QUIET, TINY, synthetic_mudata, synthetic_setup_kwargs
from lightning.pytorch.strategies import DDPStrategy

from scdx_scvi import SCDX
from scdx_scvi.model import _saving

MODALITIES = ("rna", "atac")
MAX_EPOCHS, DIFFUSION_STEPS, BATCH_SIZE, N_PROCESSES = 2, 12, 32, 2


def _weights(model) -> float:
    """Sum of every weight of the model (equal sums: the same trained model)."""
    return float(sum(v.double().sum() for v in model.module.state_dict().values()))


def _tiny_model() -> SCDX:
    mdata = synthetic_mudata(MODALITIES)
    SCDX.setup_mudata(mdata, **synthetic_setup_kwargs(MODALITIES))
    return SCDX(mdata, **TINY)


def _train_and_save(out: Path) -> None:
    """Train SCDX with DDP in this process, save it (rank 0) and report what it saw."""
    torch.set_num_threads(1)
    md.set_options(pull_on_update=False)
    scvi.settings.seed = 0
    model = _tiny_model()
    model.train(
        max_epochs=MAX_EPOCHS, max_steps_diffusion=DIFFUSION_STEPS, devices=N_PROCESSES,
        strategy="ddp", autoencoder_kwargs={"batch_size": BATCH_SIZE},
        diffusion_kwargs={"batch_size": BATCH_SIZE, "check_val_every_n_epoch": 1}, **QUIET,
    )  # fmt: skip
    model.save(out / "model")  # every process calls it; only rank 0 writes
    trainer = model.trainer
    report = {
        "rank": torch.distributed.get_rank(),
        "world_size": trainer.world_size,
        "n_train": len(model.train_indices),
        "epochs_trained": model.epochs_trained,
        "early_stopping": trainer.early_stopping_callback is not None,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "weights": _weights(model),
    }
    (out / f"rank{report['rank']}.json").write_text(json.dumps(report))


def test_ddp_trains_both_stages_saves_on_rank_zero_and_loads(tmp_path):
    paths = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # for `helpers`
    # run in tmp_path: under DDP scvi-tools' logger writes the history of rank 0 to ./lightning_logs
    done = subprocess.run(
        [sys.executable, __file__, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-5000:]
    zero, one = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (zero["rank"], one["rank"], zero["world_size"]) == (0, 1, N_PROCESSES)
    # the distributed samplers split the cells: each process takes half of every epoch
    steps_per_epoch = math.ceil(math.ceil(zero["n_train"] / N_PROCESSES) / BATCH_SIZE)
    assert zero["epochs_trained"] == {
        "autoencoder": MAX_EPOCHS,
        "diffusion": math.ceil(DIFFUSION_STEPS / steps_per_epoch),
        "diffusion_steps": DIFFUSION_STEPS,
    }
    # history is kept on rank 0 only (scvi-tools' logger); early stopping is off under DDP
    assert one["epochs_trained"]["autoencoder"] == one["epochs_trained"]["diffusion"] == 0
    assert not zero["early_stopping"] and not one["early_stopping"]
    # gradients are averaged, so the processes hold the same weights; epoch metrics are synced
    assert zero["weights"] == one["weights"]
    assert "diffusion_loss_validation" in zero["metrics"]
    assert zero["metrics"] == one["metrics"]
    # one complete save, no leftovers of a second writer
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["model.pt"]

    mdata = synthetic_mudata(MODALITIES)
    model = SCDX.load(tmp_path / "model", adata=mdata, accelerator="cpu")
    assert model.epochs_trained == zero["epochs_trained"]
    assert len(model.history["reconstruction_loss_validation"]) == MAX_EPOCHS
    n_epochs = zero["epochs_trained"]["diffusion"]
    assert len(model.diffusion_history["diffusion_loss_validation"]) == n_epochs
    assert _weights(model) == zero["weights"]
    translated = model.get_translated_modality(mdata, "rna", "atac", return_type="numpy")
    assert translated.shape == (mdata.n_obs, mdata.mod["accessibility"].n_vars)
    assert np.isfinite(translated).all()
    generated = model.generate(n_cells=8, seed=0)
    for adata in generated.mod.values():
        assert np.isfinite(adata.X.toarray()).all()


def test_strategy_objects_in_train_and_spawned_ddp_are_refused():
    model = _tiny_model()
    with pytest.raises(TypeError, match="`strategy` of `train` must be a name"):
        model.train(strategy=DDPStrategy(), **QUIET)
    for name in ("ddp_spawn", "ddp_notebook"):
        with pytest.raises(ValueError, match=f"strategy='{name}'.*spawns or forks"):
            model.train_autoencoder(max_epochs=1, devices=N_PROCESSES, strategy=name, **QUIET)
    assert not model.is_trained


def test_save_on_other_ranks_checks_arguments_and_writes_nothing(tmp_path, monkeypatch):
    model = _tiny_model()
    monkeypatch.setattr(_saving, "_distributed_rank", lambda: 1)
    with pytest.raises(TypeError, match="overwrite"):
        model.save(tmp_path / "model", overwrite="yes")
    # rank 0 may have written `dir_path` already: no "already exists" error on the others
    (tmp_path / "model").mkdir()
    model.save(tmp_path / "model")
    assert list(tmp_path.iterdir()) == [tmp_path / "model"]
    assert list((tmp_path / "model").iterdir()) == []


if __name__ == "__main__":
    _train_and_save(Path(sys.argv[1]))
