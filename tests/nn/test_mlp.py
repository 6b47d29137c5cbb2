from __future__ import annotations

import pytest
import torch

from scdx_scvi.data._sparse import torch_csr
from scdx_scvi.nn import MLP


def _sparse_rows(n_rows: int = 6, n_cols: int = 40) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n_rows, n_cols, generator=generator)
    x = x * (torch.rand(n_rows, n_cols, generator=generator) < 0.2)
    x[2] = 0  # a row with nothing open
    return x


@pytest.mark.parametrize("norm", ["layernorm", "batchnorm", "none"])
def test_sparse_input_gives_the_dense_values_and_gradients(norm):
    torch.manual_seed(0)
    mlp = MLP(40, 3, (8, 5), norm=norm)
    x = _sparse_rows()
    for mode in (mlp.eval, mlp.train):
        mode()
        dense = mlp(x)
        dense.square().sum().backward()
        grads = [p.grad.clone() for p in mlp.parameters()]
        mlp.zero_grad()
        sparse = mlp(torch_csr(x.numpy(), "cpu"))
        sparse.square().sum().backward()
        torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)
        for g, p in zip(grads, mlp.parameters(), strict=True):
            torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-5)
        mlp.zero_grad()


def test_sparse_input_with_covariates_or_no_hidden_layer_is_made_dense():
    torch.manual_seed(0)
    x = _sparse_rows()
    batch = torch.tensor([[0], [1], [2], [0], [1], [2]])
    with_batch = MLP(40, 3, (8,), n_cat_list=[3], norm="layernorm").eval()
    torch.testing.assert_close(with_batch(torch_csr(x.numpy(), "cpu"), batch), with_batch(x, batch))
    linear = MLP(40, 3, ()).eval()
    torch.testing.assert_close(linear(torch_csr(x.numpy(), "cpu")), linear(x))


@pytest.mark.parametrize("n_cat_list", [None, [1]])
def test_first_layer_without_covariates_is_the_fclayers_block_without_its_input_copy(n_cat_list):
    torch.manual_seed(0)
    mlp = MLP(40, 3, (8, 5), n_cat_list=n_cat_list, norm="batchnorm").train()
    x = _sparse_rows()
    cats = [torch.zeros(6, 1, dtype=torch.long)] if n_cat_list else []
    expected = x
    for layer in mlp.hidden:  # scvi-tools' FCLayers.forward, which concatenates its input
        expected = layer(expected, *cats)
    expected = mlp.output(expected)
    torch.testing.assert_close(mlp(x, *cats), expected, rtol=0, atol=0)


def test_reused_transpose_is_made_once_outside_autograd_and_freed_on_exit(monkeypatch):
    torch.manual_seed(0)
    mlp = MLP(40, 3, (8, 5), norm="layernorm").eval()
    rows = torch_csr(_sparse_rows().numpy(), "cpu")
    with torch.no_grad():
        expected = mlp(rows)
    made = []
    original = MLP._transposed_weight

    def counted(self, linear):
        out = original(self, linear)
        made.append(out.data_ptr())
        return out

    monkeypatch.setattr(MLP, "_transposed_weight", counted)
    with mlp.reused_transpose():
        with torch.no_grad():
            outs = [mlp(rows) for _ in range(3)]
        assert len(set(made)) == 1  # one copy for every input
        assert mlp._transposed is not None
        mlp.zero_grad()
        mlp(rows).sum().backward()  # under autograd the weight itself is read: gradients flow
        assert mlp.hidden[0].fc_layers[0][0].weight.grad is not None
    assert mlp._transposed is None and not mlp._reuse_transposed
    for out in outs:
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
