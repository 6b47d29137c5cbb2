from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from scdx_scvi.data import stack_rows


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
