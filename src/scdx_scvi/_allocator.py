"""The host allocator (glibc on Linux): whether the package may tune it, and trimming its heap."""

from __future__ import annotations

import ctypes
import functools
import os
import platform

#: Environment variables through which a user tunes the allocator; any of them: left alone.
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                 "MALLOC_TOP_PAD_", "GLIBC_TUNABLES", "LD_PRELOAD")  # fmt: skip


@functools.cache
def _loaded_glibc() -> ctypes.CDLL | None:
    """Return the C library, loaded once, if it is glibc with ``mallopt`` and ``malloc_trim``."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def glibc() -> ctypes.CDLL | None:
    """glibc, when it is the allocator and the user has not tuned or replaced it; else None."""
    if any(os.environ.get(name) for name in USER_SETTINGS):
        return None
    return _loaded_glibc()


def trim_heap() -> bool:
    """Hand the free pages of glibc's heap back to the system (``malloc_trim``).

    Blocks under the memory-map threshold (32 MB once glibc has adapted) come from the heap,
    and their memory stays resident after they are freed, wherever it lies. Returns whether
    the heap was trimmed (False off glibc, or with the allocator tuned or replaced).
    """
    libc = glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
