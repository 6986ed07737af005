"""Importing copyjob makes jemalloc Arrow's memory pool, unless the user chose one."""

import os
import subprocess
import sys

import pytest

SCRIPT = "import copyjob_dagster, pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def _pool(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**environment, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_copies_allocate_from_jemalloc() -> None:
    assert _pool() == "jemalloc"


def test_a_pool_the_user_chose_stays() -> None:
    assert _pool(ARROW_DEFAULT_MEMORY_POOL="system") == "system"


# Arrow's jemalloc prints its options (and statistics) to stderr.
DECAY = (
    "import copyjob_dagster, pyarrow as pa; keep = pa.allocate_buffer(64);"
    " pa.default_memory_pool().print_stats()"
)


def _stats(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "JE_ARROW_MALLOC_CONF"}
    result = subprocess.run(
        [sys.executable, "-c", DECAY],
        env={**environment, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stderr


def test_freed_arrow_pages_return_within_a_tenth_of_a_second() -> None:
    stats = _stats()
    assert "opt.dirty_decay_ms: 100 " in stats
    assert "opt.muzzy_decay_ms: 0 " in stats


def test_a_jemalloc_setting_the_user_chose_stays() -> None:
    assert "opt.dirty_decay_ms: 5000 " in _stats(JE_ARROW_MALLOC_CONF="dirty_decay_ms:5000")


# A block of 4 MB freed first moves glibc's default threshold past 1 MB; copyjob's stays at
# 128 KB, so the next 1 MB block is a mapping of its own (mallinfo2's hblkhd), not heap.
MAPPED = """
import ctypes, copyjob_dagster
libc = ctypes.CDLL(None)
FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS.split()]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


def test_large_blocks_are_mapped_apart_from_the_heap() -> None:
    if not os.confstr("CS_GNU_LIBC_VERSION"):
        pytest.skip("glibc's malloc only")
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    result = subprocess.run(
        [sys.executable, "-c", MAPPED], env=environment, capture_output=True, text=True, check=True
    )
    assert int(result.stdout) >= 1 << 20


# delta-rs's own jemalloc (prefixed `_rjem_`) reads its options when `deltalake` is loaded.
DELTA = "import os, copyjob_dagster, deltalake; print(os.environ['_RJEM_MALLOC_CONF'])"


def _delta_options(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    result = subprocess.run(
        [sys.executable, "-c", DELTA],
        env={**environment, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_delta_rs_returns_freed_pages_within_a_tenth_of_a_second_unless_told_otherwise() -> None:
    assert _delta_options() == "dirty_decay_ms:100,muzzy_decay_ms:0"
    assert _delta_options(_RJEM_MALLOC_CONF="dirty_decay_ms:5000") == "dirty_decay_ms:5000"
