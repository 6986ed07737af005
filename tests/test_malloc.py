"""While the native driver reads, glibc keeps freed batch-sized blocks in its heap
(copyjob_dagster/malloc.py), and the package's own setting comes back after the last read."""

import ctypes
import threading

import pytest

from copyjob_dagster import malloc

MIB = 1 << 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # noqa: RUF012 - ctypes' own declaration
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None)
    if malloc._mallopt() is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc's malloc (2.33 or later) without a threshold of the user's")
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def _mapped(libc: ctypes.CDLL, size: int) -> bool:
    """Whether glibc serves a block of `size` bytes with a mapping of its own."""
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    try:
        return libc.mallinfo2().hblks > before
    finally:
        libc.free(block)


def test_a_batch_sized_block_comes_from_the_heap_only_while_a_read_runs() -> None:
    libc = _libc()
    assert _mapped(libc, 8 * MIB)
    with malloc.driver_heap():
        assert not _mapped(libc, 8 * MIB)
    assert _mapped(libc, 8 * MIB)


def test_concurrent_reads_share_the_window_until_the_last_ends() -> None:
    libc = _libc()
    first_in, second_done = threading.Event(), threading.Event()

    def second() -> None:
        first_in.wait()
        with malloc.driver_heap():
            pass
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    with malloc.driver_heap():
        first_in.set()
        second_done.wait()
        assert not _mapped(libc, 8 * MIB)  # the second read's end kept the first one's window
    thread.join()
    assert _mapped(libc, 8 * MIB)
