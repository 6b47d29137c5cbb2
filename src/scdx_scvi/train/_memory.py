"""What the host allocator does with memory freed while the autoencoder trains (Linux, glibc).

Every minibatch allocates and frees feature-sized blocks (the dense ATAC batch, the decoder
logits, their gradients, the gradients of the peak-sized weights): 26 MB each at 25,000 peaks
and 256 cells, hundreds of megabytes at 10^5 peaks. glibc's ``malloc`` serves a block above its
memory-map threshold with a fresh memory map and returns it to the system when it is freed.
The threshold starts at 128 kB and rises to the size of each such block freed, up to 32 MB;
blocks under it come from the heap, where freed memory stays, between blocks of other sizes,
for later allocations. Two policies, for the duration of a block (:func:`freed_memory_policy`):

``"release"``
    The threshold is fixed at 16 MB: feature-sized blocks always get their own memory map and
    go back to the system when freed, so the resident set holds little more than the live
    tensors; each minibatch faults its large blocks in again.
``"retain"``
    Every block comes from the heap and freed memory stays there for the next minibatch: no
    block is faulted in twice, for a higher peak (the free space between blocks of different
    sizes stays resident).

On exit the thresholds are set to where glibc's own adaptation settles once blocks of 32 MB
have been freed (memory maps from 32 MB, the heap trimmed above 64 MB; the adaptation itself
stays off for the process, as after any ``mallopt``) and the free memory is handed back
(``malloc_trim``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Literal

from scdx_scvi._allocator import glibc

FreedMemory = Literal["release", "retain"]

# mallopt parameters and glibc's values (malloc/malloc.c).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_DEFAULT_MMAP_MAX = 65536
_SETTLED_MMAP_THRESHOLD = 32 * 2**20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
_LARGEST = 2**31 - 1  # mallopt takes a C int
#: Blocks of this size or more get their own memory map under the ``"release"`` policy.
RELEASE_THRESHOLD = 16 * 2**20
_POLICIES: dict[str, tuple[tuple[int, int], ...]] = {
    "release": ((_M_MMAP_THRESHOLD, RELEASE_THRESHOLD),),
    "retain": ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _LARGEST)),
}
_depth = 0  # nested blocks (a user's around a training call): the outermost one restores


def check_policy(policy: object, name: str = "policy") -> None:
    """Raise if ``policy`` is neither a :data:`FreedMemory` policy nor None."""
    if policy is not None and policy not in _POLICIES:
        raise ValueError(f"`{name}` must be one of {list(_POLICIES)} or None, got {policy!r}.")


@contextmanager
def freed_memory_policy(policy: FreedMemory | None) -> Iterator[bool]:
    """Apply a policy for freed host memory (module docstring); yield whether it applies.

    It applies under Linux with glibc, unless the allocator is tuned through the environment
    (``MALLOC_*``, ``GLIBC_TUNABLES``) or replaced (``LD_PRELOAD``); ``None`` leaves the
    allocator as it is. The setting is process-wide while it lasts. Within a block, a nested
    one changes nothing.
    """
    global _depth
    check_policy(policy)
    libc = glibc() if policy is not None else None
    if libc is None:
        yield False
        return
    if _depth == 0:
        for parameter, value in _POLICIES[policy]:
            libc.mallopt(parameter, value)
    _depth += 1
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:  # the outermost block restores
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_MMAP_THRESHOLD, _SETTLED_MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, 2 * _SETTLED_MMAP_THRESHOLD)
            libc.malloc_trim(0)


def retained_freed_memory(enabled: bool = True) -> AbstractContextManager[bool]:
    """Keep freed host memory in the process for reuse: ``freed_memory_policy("retain")``.

    For any code that allocates and frees large blocks over and over, e.g. a translation into
    10^5 peaks; ``enabled=False`` leaves the allocator as it is.
    """
    return freed_memory_policy("retain" if enabled else None)
