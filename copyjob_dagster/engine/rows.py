"""Batches on their way from the source to the destination: renamed, counted, checked for
rows. Never imports Dagster."""

import itertools
import time
from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa

# Called with the rows copied so far, the estimated total (None if unknown) and the seconds
# since the copy started: once before the first row, then after each batch.
ProgressCallback = Callable[[int, int | None, float], None]


def non_empty(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch] | None:
    """The batches, or None when there is no row at all (so nothing is written)."""
    for batch in batches:
        if batch.num_rows:
            return itertools.chain([batch], batches)
    return None


def renamed(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    return (pa.RecordBatch.from_arrays(batch.columns, schema=schema) for batch in batches)


class RowCounter:
    """Counts the rows that pass to the destination, and reports them to `progress`."""

    def __init__(
        self, progress: ProgressCallback | None = None, estimate: int | None = None
    ) -> None:
        self.rows = 0
        self._progress = progress
        self._estimate = estimate
        self._started = time.monotonic()

    def count(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        self._report()
        for batch in batches:
            self.rows += batch.num_rows
            yield batch
            self._report()  # the destination has taken the batch and asks for the next

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(self.rows, self._estimate, time.monotonic() - self._started)
