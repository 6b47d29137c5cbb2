from __future__ import annotations

import platform

import numpy as np
import pytest

from scdx_scvi.train import retained_freed_memory

pytestmark = pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/self/statm")
GLIBC = platform.libc_ver()[0] == "glibc"
BLOCK = 256 * 2**20  # far above glibc's largest memory-map threshold (32 MB)


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _allocate_and_free() -> float:
    """Resident MiB gained by touching, then freeing, a BLOCK-sized buffer."""
    before = _resident_mib()
    block = np.ones(BLOCK // 8)
    del block
    return _resident_mib() - before


@pytest.mark.skipif(not GLIBC, reason="the setting applies under Linux with glibc")
def test_freed_memory_stays_for_reuse_and_is_returned_on_exit(monkeypatch):
    for name in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    assert _allocate_and_free() < 64  # by default, a freed large block goes back at once
    with retained_freed_memory() as applied:
        assert applied
        kept = _allocate_and_free()
        assert kept > 200  # freed, but kept in the process
        assert _allocate_and_free() < 64  # and reused by the next allocation
        inside = _resident_mib()
    assert _resident_mib() < inside - 200  # handed back on exit
    assert _allocate_and_free() < 64  # glibc's defaults again


def test_the_setting_can_be_declined_and_respects_a_tuned_allocator(monkeypatch):
    with retained_freed_memory(enabled=False) as applied:
        assert not applied
        assert _allocate_and_free() < 64
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    with retained_freed_memory() as applied:
        assert not applied


@pytest.mark.skipif(not GLIBC, reason="the setting applies under Linux with glibc")
def test_a_nested_block_leaves_the_outer_one_in_effect(monkeypatch):
    for name in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    with retained_freed_memory():
        with retained_freed_memory() as applied:
            assert applied
        assert _allocate_and_free() > 200  # still kept after the inner block
    assert _allocate_and_free() < 64
