"""``freed_memory_policy``, ``retained_freed_memory`` and the trimmed heap of ``stack_rows``,
each scenario in a fresh process.

The allocator's state is process-wide: large blocks that earlier tests freed in the middle of
the heap serve later allocations without a memory map, so every scenario starts from a new
interpreter.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/self/statm")
GLIBC = platform.libc_ver()[0] == "glibc"
_TUNING = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD", "GLIBC_TUNABLES")

_PRELUDE = """
import numpy as np
from scdx_scvi.train import freed_memory_policy, retained_freed_memory

BLOCK = 256 * 2**20  # far above glibc's largest memory-map threshold (32 MB)
SIZE = 24 * 2**20  # between the "release" policy's threshold (16 MB) and that largest one


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def allocate_and_free(size=BLOCK):
    # resident MiB gained by touching, then freeing, a buffer of `size` bytes
    before = resident_mib()
    block = np.ones(size // 8)
    del block
    return resident_mib() - before
"""


def _run(body: str, **env: str) -> None:
    """Run ``body`` after the prelude in a new interpreter; its assertions must hold."""
    environment = {k: v for k, v in os.environ.items() if k not in _TUNING}
    code = _PRELUDE + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", code], env={**environment, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.skipif(not GLIBC, reason="the setting applies under Linux with glibc")
def test_freed_memory_stays_for_reuse_and_is_returned_on_exit():
    _run("""
        assert allocate_and_free() < 64  # by default, a freed large block goes back at once
        with retained_freed_memory() as applied:
            assert applied
            kept = allocate_and_free()
            assert kept > 200, kept  # freed, but kept in the process
            assert allocate_and_free() < 64  # and reused by the next allocation
            inside = resident_mib()
        assert resident_mib() < inside - 200  # handed back on exit
        assert allocate_and_free() < 64  # glibc's defaults again
    """)


def test_the_setting_can_be_declined_and_respects_a_tuned_allocator():
    _run("""
        with retained_freed_memory(enabled=False) as applied:
            assert not applied
            assert allocate_and_free() < 64
    """)
    _run(
        """
        with retained_freed_memory() as applied:
            assert not applied
        """,
        MALLOC_TRIM_THRESHOLD_="1000000",
    )


@pytest.mark.skipif(not GLIBC, reason="the setting applies under Linux with glibc")
def test_a_nested_block_leaves_the_outer_one_in_effect():
    _run("""
        with retained_freed_memory():
            with retained_freed_memory() as applied:
                assert applied
            assert allocate_and_free() > 200  # still kept after the inner block
        assert allocate_and_free() < 64
    """)


@pytest.mark.skipif(not GLIBC, reason="the setting applies under Linux with glibc")
def test_release_returns_feature_sized_blocks_at_once():
    # by default glibc's threshold rises to a freed block's size: the next one stays resident
    _run("""
        allocate_and_free(SIZE)
        assert allocate_and_free(SIZE) > 16
    """)
    _run("""
        with freed_memory_policy("release") as applied:
            assert applied
            assert allocate_and_free(SIZE) < 8 and allocate_and_free(SIZE) < 8
            with freed_memory_policy("retain") as nested:  # changes nothing
                assert nested and allocate_and_free(BLOCK) < 64
        assert allocate_and_free(BLOCK) < 64
    """)
    _run("""
        with freed_memory_policy(None) as applied:
            assert not applied
        try:
            with freed_memory_policy("keep"):
                pass
        except ValueError as error:
            assert "`policy` must be one of" in str(error)
        else:
            raise AssertionError("an unknown policy was accepted")
    """)


@pytest.mark.skipif(not GLIBC, reason="the heap is trimmed under Linux with glibc")
def test_stacking_hands_the_blocks_heap_memory_back():
    _run("""
        from scipy import sparse
        from scdx_scvi.data import stack_rows

        allocate_and_free(SIZE)  # glibc's threshold rises: the blocks below come from the heap
        rng = np.random.default_rng(0)
        blocks, kept = [], []
        for _ in range(200):  # about 1 MB each, each followed by a block that stays
            blocks.append(sparse.random(64, 40_000, density=0.05, format="csr",
                                        dtype=np.float32, random_state=rng))
            kept.append(np.ones(25_000))
        before = resident_mib()
        stacked = stack_rows(blocks)
        assert stacked.shape == (12_800, 40_000) and not blocks
        # the result (195 MiB) took the blocks' place; untrimmed, the freed blocks stayed
        # resident between the kept ones (+195 MiB)
        grown = resident_mib() - before
        assert grown < 60, grown
    """)


def test_the_heap_is_trimmed_only_where_the_allocator_is_glibc_as_it_is(monkeypatch):
    from scdx_scvi._allocator import trim_heap

    for name in _TUNING:
        monkeypatch.delenv(name, raising=False)
    assert trim_heap() is GLIBC
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert trim_heap() is False
