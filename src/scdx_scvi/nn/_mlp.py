"""Multilayer perceptrons with per-layer widths, built from :class:`scvi.nn.FCLayers`.

The input may be a sparse CSR tensor (accessibility of 10^4-10^5 peaks, 1-10 % open): the first
product is then a sum of the weight columns of the non-zero inputs, weighted by their values
(:func:`torch.nn.functional.embedding_bag`), several times faster on the CPU than the dense
product and than ``torch.sparse.mm``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from scvi.nn import FCLayers
from torch import nn

Norm = Literal["batchnorm", "layernorm", "none"]


class MLP(nn.Module):
    """A stack ``Linear -> norm -> ELU`` per hidden width, then a plain ``Linear`` output layer.

    This is the encoder/decoder body of the scDiffusion-X autoencoder: every layer but the last
    is a linear map followed by a normalisation and an ELU; the last layer has no normalisation
    and no activation. Each hidden layer is an :class:`scvi.nn.FCLayers` block, so categorical
    covariates (batch) are one-hot encoded and injected into every hidden layer when
    ``n_cat_list`` is given.

    Parameters
    ----------
    n_input
        Number of input features.
    n_output
        Number of output features.
    n_hidden
        Width of each hidden layer, in order (e.g. ``(512, 300)``). May be empty.
    n_cat_list
        Number of categories of each categorical covariate injected into the hidden layers.
        Covariates with a single category are ignored, as in scvi-tools.
    norm
        Normalisation after each hidden linear layer.
    dropout_rate
        Dropout after each hidden activation (the reference uses none).
    """

    def __init__(
        self,
        n_input: int,
        n_output: int,
        n_hidden: Sequence[int],
        n_cat_list: Sequence[int] | None = None,
        norm: Norm = "batchnorm",
        dropout_rate: float = 0.0,
    ):
        super().__init__()
        if norm not in ("batchnorm", "layernorm", "none"):
            raise ValueError(f"norm must be 'batchnorm', 'layernorm' or 'none', got {norm!r}.")
        widths = [n_input, *n_hidden]
        self.hidden = nn.ModuleList(
            FCLayers(
                n_in=n_in,
                n_out=n_out,
                n_cat_list=list(n_cat_list or []),
                n_layers=1,
                dropout_rate=dropout_rate,
                use_batch_norm=norm == "batchnorm",
                use_layer_norm=norm == "layernorm",
                activation_fn=nn.ELU,
            )
            for n_in, n_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.output = nn.Linear(widths[-1], n_output)
        # the first weight transposed for CSR inputs, kept while `reused_transpose` is open
        self._transposed: torch.Tensor | None = None
        self._reuse_transposed = False

    @contextmanager
    def reused_transpose(self) -> Iterator[None]:
        """Within the block, CSR inputs outside autograd share one transposed first weight.

        Each CSR input otherwise transposes the first layer's weight anew (a copy of the
        layer: 52 MB at 25,000 peaks), which for one chunk of 1,024 cells took as long as the
        layer's product itself. The copy is made at the first such input and freed on exit;
        the weight must not change within the block.
        """
        self._reuse_transposed = True
        try:
            yield
        finally:
            self._reuse_transposed, self._transposed = False, None

    def forward(self, x: torch.Tensor, *cat_list: torch.Tensor) -> torch.Tensor:
        """Map ``x`` (cells x inputs) to cells x outputs; ``cat_list`` holds covariate codes.

        ``x`` may be a ``torch.sparse_csr`` tensor. It is made dense where the first layer
        injects covariates (their one-hot codes are concatenated to the input); without
        covariates the first layer reads it as it is (:func:`_first_block`).
        """
        return self.output(self.last_hidden(x, *cat_list))

    def last_hidden(self, x: torch.Tensor, *cat_list: torch.Tensor) -> torch.Tensor:
        """Return the activations of the last hidden layer (the input of :attr:`output`).

        The output layer is row-wise, so the hidden activations of several inputs can share
        one output product (one weight gradient instead of one per input and their sum).
        """
        hidden = iter(self.hidden)
        first = self.hidden[0] if len(self.hidden) else None
        if first is not None and first.n_cov == 0 and x.dim() == 2:
            x = _first_block(first, x, self._transposed_weight)
            next(hidden)
        elif x.layout == torch.sparse_csr:
            x = x.to_dense()
        for layer in hidden:
            x = layer(x, *cat_list)
        return x

    def _transposed_weight(self, linear: nn.Linear) -> torch.Tensor:
        """``linear.weight.t()`` made contiguous, reused within :meth:`reused_transpose`."""
        if not self._reuse_transposed or torch.is_grad_enabled():
            return linear.weight.t().contiguous()
        if self._transposed is None:
            self._transposed = linear.weight.t().contiguous()
        return self._transposed


def _first_block(
    layer: FCLayers, x: torch.Tensor, transposed: Callable[[nn.Linear], torch.Tensor]
) -> torch.Tensor:
    """One-block :class:`~scvi.nn.FCLayers` without covariates, applied to dense or CSR ``x``.

    The same modules in the same order as ``FCLayers.forward``, without its concatenation of
    the input with the (here absent) covariates: that copies the input, and the copy is kept
    for the backward pass (a minibatch of 256 cells x 200,000 peaks: 195 MB). Sparse CSR rows
    go through :func:`~torch.nn.functional.embedding_bag` over ``transposed(linear)``, the
    layer's weight transposed and contiguous.
    """
    linear, *rest = layer.fc_layers[0]
    if x.layout != torch.sparse_csr:
        out = linear(x)
    else:
        out = F.embedding_bag(  # a transposed weight that is not contiguous is ~10x slower
            x.col_indices(),
            transposed(linear),
            x.crow_indices(),
            mode="sum",
            per_sample_weights=x.values(),
            include_last_offset=True,
        )
        out = out + linear.bias
    for module in rest:  # normalisation, activation, dropout, as FCLayers applies them
        if module is not None:
            out = module(out)
    return out
