import os

# Arrow's memory pool for the process, chosen before pyarrow first allocates: read-ahead threads
# build batches that the copy's thread frees, which jemalloc serves with less memory than the
# default pool (see stores/read_ahead.py). A pool the user chose stays.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

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
