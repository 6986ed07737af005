import contextlib
import ctypes
import os

# Arrow's memory pool for the process, chosen before pyarrow first allocates: read-ahead threads
# build batches that the copy's thread frees, which jemalloc serves with less memory than the
# default pool (see stores/read_ahead.py). A pool the user chose stays.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
# jemalloc keeps freed pages for `dirty_decay_ms` (Arrow's default: 1,000 ms) before it returns
# them: a copy freeing ~100 MB of batches a second held 30-70 MB of freed pages at its end
# (jemalloc's resident memory against 1 MB allocated), reached only by copies lasting a second
# or more, so that the growth looked like it followed the table. 100 ms keeps a tenth of them;
# 0 (every freed page returned at once) cost 10-30% of the write's speed. Read by Arrow's
# jemalloc when it starts; a setting of the user's stays.
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "dirty_decay_ms:100,muzzy_decay_ms:0")
# delta-rs (the `deltalake` package) has a jemalloc of its own, prefixed `_rjem_`, which keeps
# freed pages 10 s by default: a Delta full copy of 2,000,000 rows peaked at 278-283 MB, with
# 100 ms at 259-265 MB (200,000 rows: 254-262 MB either way). Read when `deltalake` is loaded.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:100,muzzy_decay_ms:0")

# glibc serves a block of at least this many bytes with a mapping of its own, returned whole when
# freed. Its default threshold moves up to the largest block freed so far (up to 32 MB), so after
# the first COPY chunk (1 MB of Python bytes) every chunk, CSV block and buffer came from the
# heap, whose holes the next, differently sized ones did not fit: a copy's resident memory grew
# with the table (PostgreSQL -> Parquet +124 MB at 2,000,000 rows against +56 MB at 200,000)
# while Arrow's and Python's live bytes stayed at 14-18 MB. A fixed threshold keeps it flat.
# The user's MALLOC_MMAP_THRESHOLD_ (read by glibc at start) stays.
MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def _map_large_allocations() -> None:
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or not _glibc():
        return
    with contextlib.suppress(OSError, AttributeError):  # no mallopt: glibc's own policy stays
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError, AttributeError):
        return False


_map_large_allocations()

__version__ = "0.1.0"

__all__ = ["CopyJobComponent"]


def __getattr__(name: str) -> object:
    # The Component imports Dagster; the engine, stores and config (which import this package
    # first) never do, so it loads when asked for (`dg` finds it through the entry point).
    if name == "CopyJobComponent":
        from copyjob_dagster.component import CopyJobComponent

        return CopyJobComponent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
