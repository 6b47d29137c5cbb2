from __future__ import annotations

import numpy as np
import torch

from scdx_scvi.train import LatentDataModule

DIMS = {"rna": 4, "atac": 3}


def _module(n=10, observed=None, val=(8, 9), batch_size=3, seed=0):
    latents = {m: torch.arange(n * d, dtype=torch.float32).reshape(n, d) for m, d in DIMS.items()}
    labels, batch = torch.arange(n) % 3, torch.arange(n) % 2
    return LatentDataModule(
        latents, labels, batch, observed, list(range(8)), list(val), None, batch_size, seed
    )


def test_minibatches_unpack_to_the_cells_rows():
    data = _module(observed={"atac": torch.arange(10) % 2 == 0})
    assert (data.n_train, data.n_val) == (8, 2)
    seen = []
    for minibatch in data.train_dataloader():
        latents, labels, batch, observed = data.unpack(minibatch)
        assert list(latents) == list(DIMS) and list(observed) == list(DIMS)
        cells = latents["rna"][:, 0].long() // DIMS["rna"]
        torch.testing.assert_close(latents["atac"][:, 0].long() // DIMS["atac"], cells)
        assert torch.equal(labels, cells % 3) and torch.equal(batch, cells % 2)
        assert observed["rna"].all() and torch.equal(observed["atac"], cells % 2 == 0)
        seen += cells.tolist()
    assert sorted(seen) == list(range(8))  # every training cell once per epoch
    val = [data.unpack(b)[0]["rna"][:, 0].long() // 4 for b in data.val_dataloader()]
    assert torch.cat(val).tolist() == [8, 9]  # in order


def test_shuffling_is_seeded_and_an_empty_validation_set_gives_no_loader():
    def order(seed):
        data = _module(seed=seed, val=())
        return [data.unpack(b)[1].tolist() for b in data.train_dataloader()]

    assert order(0) == order(0) != order(1)
    data = _module(val=())
    assert data.val_dataloader() == [] and data.n_val == 0
    np.testing.assert_array_equal(data.test_idx, [])
