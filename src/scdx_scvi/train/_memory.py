"""Freed host memory kept in the process while the autoencoder trains (Linux, glibc).

At 10^5 peaks every minibatch allocates several gigabytes of feature-sized tensors (the dense
ATAC batch, the decoder logits, their gradients, the gradients of the peak-sized weights), each
hundreds of megabytes. glibc's ``malloc`` serves every block above 32 MB with a fresh memory
map and returns it to the system when it is freed, so the next minibatch faults the same
gigabytes in again, page by page, at a cost comparable to the arithmetic. Within
:func:`retained_freed_memory` large blocks come from the heap and freed memory stays there for
the next minibatch; on exit glibc's defaults are restored and the free memory is returned
(``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt parameters and glibc's defaults (malloc/malloc.c).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_LARGEST = 2**31 - 1  # mallopt takes a C int
_depth = 0  # nested blocks (a user's around a training call): the outermost one restores

#: Environment variables through which a user tunes the allocator; any of them: left alone.
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                  "MALLOC_TOP_PAD_", "GLIBC_TUNABLES", "LD_PRELOAD")  # fmt: skip


def _glibc() -> ctypes.CDLL | None:
    """glibc, when it is the allocator and the user has not tuned or replaced it; else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if any(os.environ.get(name) for name in _USER_SETTINGS):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextmanager
def retained_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Keep freed host memory in the process for reuse; yield whether the setting applies.

    It applies with ``enabled`` under Linux with glibc, unless the allocator is tuned through
    the environment (``MALLOC_*``, ``GLIBC_TUNABLES``) or replaced (``LD_PRELOAD``). The
    setting is process-wide while it lasts; on exit, glibc's default thresholds are set (its
    dynamic adjustment of the memory-map threshold stays off for the process) and the free
    memory is handed back to the system. Within a block, a nested one changes nothing.
    """
    global _depth
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    if _depth == 0:
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, _LARGEST)
    _depth += 1
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:  # the outermost block restores
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)
