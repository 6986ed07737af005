"""glibc's malloc policy: the process's mmap threshold, and the native driver's heap.

The package fixes the mmap threshold when it is imported (`map_large_allocations`, below).
ADBC's PostgreSQL driver builds each batch (about `pgadbc.BATCH_BYTES`) in buffers of glibc's
malloc, which that threshold serves with fresh mappings: every batch's pages are mapped, faulted
in and cleared, then unmapped when the batch is freed. On the benchmark's 2,000,000-row `orders`
that is about 65,000 page faults and 0.2-0.25 s of system CPU, a fifth of the driver's thread.
While a native read runs (`driver_heap`), the threshold is raised above a batch and the heap is
not trimmed, so that the next batch reuses the pages the last one freed; when the last read
ends, the package's settings come back and the free pages of glibc's heaps are returned
(`malloc_trim`). The other paths' memory stays as the package sets it, apart from copies that
run beside a native read in the same process.
"""

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator

# glibc serves a block of at least this many bytes with a mapping of its own, returned whole when
# freed. Its default threshold moves up to the largest block freed so far (up to 32 MB), so after
# the first COPY chunk (1 MB of Python bytes) every chunk, CSV block and buffer came from the
# heap, whose holes the next, differently sized ones did not fit: a copy's resident memory grew
# with the table (PostgreSQL -> Parquet +124 MB at 2,000,000 rows against +56 MB at 200,000)
# while Arrow's and Python's live bytes stayed at 14-18 MB. A fixed threshold keeps it flat.
# The user's MALLOC_MMAP_THRESHOLD_ (read by glibc at start) stays.
MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def map_large_allocations() -> None:
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or not glibc():
        return
    with contextlib.suppress(OSError, AttributeError):  # no mallopt: glibc's own policy stays
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError, AttributeError):
        return False


_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
# Above a driver batch's largest buffer (8 MiB batches, grown by doubling); glibc's own cap on
# the dynamic threshold is 32 MiB on 64-bit.
_READING_MMAP, _READING_TRIM = 32 << 20, 64 << 20
_TRIM_DEFAULT = 128 * 1024
_lock = threading.Lock()
_readers = 0


@contextlib.contextmanager
def driver_heap() -> Iterator[None]:
    """Keep freed batch buffers in glibc's heap while the block runs (nested and concurrent
    reads share one window)."""
    mallopt = _mallopt()
    if mallopt is None:
        yield
        return
    global _readers
    with _lock:
        _readers += 1
        if _readers == 1:
            mallopt(_M_MMAP_THRESHOLD, _READING_MMAP)
            mallopt(_M_TRIM_THRESHOLD, _READING_TRIM)
    try:
        yield
    finally:
        with _lock:
            _readers -= 1
            if _readers == 0:
                mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                mallopt(_M_TRIM_THRESHOLD, _TRIM_DEFAULT)
                _libc().malloc_trim(0)  # the pages the batches left in the heaps, returned


def _mallopt():  # type: ignore[no-untyped-def]
    """glibc's mallopt where the package fixed the threshold itself (not the user's)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return None
    if not glibc():
        return None
    try:
        libc = _libc()
        return libc.mallopt if hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None)
