"""Locks that keep two copies of the same destination table from overlapping.

Every lock here is released by the operating system or the database server when the process
that holds it dies, so a killed copy never leaves a table locked.
"""

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from copyjob_dagster.errors import DestinationError

POLL_SECONDS = 0.2


def lock_key(*parts: str | None) -> bytes:
    """A stable digest naming one destination table, for server-side lock names."""
    return hashlib.sha256("\x00".join(p or "" for p in parts).encode()).digest()


def wait_for(acquire: Callable[[], bool], timeout_seconds: float, what: str) -> None:
    """Call `acquire` until it succeeds; after `timeout_seconds`, refuse with a clear error."""
    deadline = time.monotonic() + timeout_seconds
    while not acquire():
        if time.monotonic() >= deadline:
            raise DestinationError(
                f"{what} is being copied by another run; this run waited "
                f"{timeout_seconds:g} s, changed nothing, and can be started again"
            )
        time.sleep(POLL_SECONDS)


@contextmanager
def file_lock(path: Path, timeout_seconds: float, what: str) -> Iterator[None]:
    """An exclusive `flock` on `path` (created if missing) for as long as the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)

    def acquire() -> bool:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        wait_for(acquire, timeout_seconds, what)
        yield
    finally:
        os.close(descriptor)
