import os

# Arrow's memory pool for the process, chosen before pyarrow first allocates: read-ahead threads
# build batches that the copy's thread frees, which jemalloc serves with less memory than the
# default pool (see stores/read_ahead.py). A pool the user chose stays.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

__version__ = "0.1.0"
