"""Arrow batches into MySQL/MariaDB with `LOAD DATA LOCAL INFILE`, fed through a FIFO.

A thread writes the batches as CSV into a named pipe while the driver streams the pipe to the
server, so no value passes through Python, nothing lands on disk, and reading the source
overlaps loading. Arrow's native writer writes straight into the pipe through Arrow's own file:
no batch becomes a Python bytes object (each was a fresh mapping of megabytes to fault in), and
the thread lets go of the GIL while it writes. The CSV is exact for MySQL's reader: every value
is quoted (`"` doubled inside), NULL is the bare word NULL, there is no escape character
(backslashes are data), booleans are 0/1, single floats their exact double's text, timestamps
UTC wall time, and binary travels as hex that `UNHEX` decodes. With LOCAL the server turns bad
values into warnings instead of errors, so any warning fails the load, and the caller's
transaction rolls it back.
"""

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.csv as csv
from sqlalchemy.engine import Connection

from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores import types
from copyjob_dagster.stores.pgcsv import hex_text
from copyjob_dagster.stores.sql import database_timestamps

_OPTIONS = csv.WriteOptions(
    include_header=False, quoting_style="all_valid", null_string="NULL", batch_size=8192
)
_JOIN_SECONDS = 30


def loads_exactly(schema: pa.Schema) -> bool:
    """Whether every column's type is one the CSV for LOAD DATA spells exactly."""
    return all(types.csv_spells_exactly(t) for t in schema.types)


def load(
    conn: Connection,
    target: str,
    quote: Callable[[str], str],
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
) -> int:
    """LOAD DATA the batches into `target` (quoted) on `conn`; return the rows loaded."""
    binary = {
        f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)
    }
    names = [f"@v{i}" if f.name in binary else quote(f.name) for i, f in enumerate(schema)]
    decode = [f"{quote(f.name)} = UNHEX(@v{i})" for i, f in enumerate(schema) if f.name in binary]
    statement = (
        f"LOAD DATA LOCAL INFILE %s INTO TABLE {target} CHARACTER SET utf8mb4 "
        "FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n' "
        f"({', '.join(names)})" + (f" SET {', '.join(decode)}" if decode else "")
    )
    with _fifo() as path:
        feeder = _Feeder(path, batches)
        feeder.start()
        try:
            loaded = conn.exec_driver_sql(statement, (path,)).rowcount
        finally:
            feeder.stop()
        if feeder.error is not None:
            raise feeder.error
    warnings = conn.exec_driver_sql("SHOW WARNINGS LIMIT 3").all()
    if warnings:
        raise DestinationError(
            f"loading {target} changed or refused values: "
            + "; ".join(str(message) for _level, _code, message in warnings)
        )
    if loaded != feeder.rows:
        raise DestinationError(f"loading {target}: sent {feeder.rows} rows, {loaded} loaded")
    return loaded


@contextmanager
def _fifo() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="copyjob-load-")
    path = os.path.join(folder, "rows.csv")
    os.mkfifo(path, 0o600)
    try:
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Feeder(threading.Thread):
    """Writes the batches as CSV into the FIFO; keeps the error that stopped it, if any."""

    def __init__(self, path: str, batches: Iterable[pa.RecordBatch]) -> None:
        super().__init__(name="copyjob-load-feeder", daemon=True)
        self._path = path
        self._batches = batches
        self._stopping = threading.Event()
        self.rows = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            # Opening blocks until the driver opens the FIFO to read it.
            with pa.OSFile(self._path, "wb") as sink:
                writer: csv.CSVWriter | None = None
                for batch in self._batches:
                    if self._stopping.is_set():
                        return
                    spelled = _spelled(batch)
                    if writer is None:
                        writer = csv.CSVWriter(sink, spelled.schema, write_options=_OPTIONS)
                    writer.write_batch(spelled)
                    self.rows += batch.num_rows
        except BrokenPipeError:
            pass  # the driver stopped reading: its own error says why
        except BaseException as exc:  # handed to the loading thread, which raises it
            self.error = exc

    def stop(self) -> None:
        """Stop feeding; unblock the thread if it still waits for the driver to open the FIFO
        (the server refused the statement before asking for the file)."""
        self._stopping.set()
        if self.is_alive():
            try:
                descriptor = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK)
                os.close(descriptor)
            except OSError:
                pass
        self.join(_JOIN_SECONDS)


def _spelled(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with each column in the type whose CSV text MySQL reads back exactly."""
    columns = []
    for column in database_timestamps(batch).columns:
        t = column.type
        if pa.types.is_boolean(t):
            column = column.cast(pa.int8())
        elif pa.types.is_float32(t) or pa.types.is_float16(t):
            # float32's shortest text (3.4028235e38) can exceed FLT_MAX as a decimal; the
            # float's exact double value rounds back to it.
            column = column.cast(pa.float64())
        elif pa.types.is_timestamp(t) and t.tz is not None:
            column = column.cast(pa.timestamp("us"))  # the UTC wall time
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
            column = hex_text(column, prefix="")
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
