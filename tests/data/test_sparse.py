from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import sparse

from scdx_scvi.data import stack_rows
from scdx_scvi.data._sparse import scipy_csr


def test_stack_rows_matches_vstack():
    rng = np.random.default_rng(0)
    blocks = [
        sparse.random(n, 7, density=d, format="csr", dtype=np.float32, random_state=rng)
        for n, d in [(3, 0.5), (0, 0.0), (4, 0.0), (5, 0.9)]
    ]
    expected = sparse.vstack(blocks, format="csr")
    got = stack_rows(list(blocks))
    assert got.shape == (12, 7) and got.dtype == np.float32
    assert (got != expected).nnz == 0
    got.check_format(full_check=True)


def test_stack_rows_of_no_blocks():
    empty = stack_rows([], n_cols=5)
    assert empty.shape == (0, 5) and sparse.isspmatrix_csr(empty)
    with pytest.raises(ValueError, match="n_cols"):
        stack_rows([])


@pytest.mark.parametrize("shape", [(6, 9), (0, 9), (4, 0)])
def test_scipy_csr_keeps_the_nonzero_entries(shape):
    generator = torch.Generator().manual_seed(0)
    dense = torch.randn(shape, generator=generator, dtype=torch.float64)
    dense[dense.abs() < 0.8] = 0.0
    dense[:1] = 0.0  # an empty row
    got = scipy_csr(dense)
    assert sparse.isspmatrix_csr(got) and got.dtype == np.float32 and got.shape == shape
    assert got.indices.dtype == got.indptr.dtype == np.int32  # half of torch's int64
    got.check_format(full_check=True)
    np.testing.assert_array_equal(got.toarray(), dense.numpy().astype(np.float32))
    assert got.nnz == int((dense != 0).sum())
