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

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv
from sqlalchemy.engine import Connection

from copyjob_dagster.errors import DestinationError
from copyjob_dagster.stores import types
from copyjob_dagster.stores.pgcsv import hex_text
from copyjob_dagster.stores.pgmysql import TextCopy
from copyjob_dagster.stores.sql_writing import database_timestamps

_OPTIONS = csv.WriteOptions(
    include_header=False, quoting_style="all_valid", null_string="NULL", batch_size=8192
)
_JOIN_SECONDS = 30
log = logging.getLogger(__name__)


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
    return _load(conn, target, quote, schema.names, binary, _csv_of(batches))


def load_text(conn: Connection, target: str, quote: Callable[[str], str], copy: TextCopy) -> int:
    """LOAD DATA the CSV a source wrote in this dialect (see `pgmysql`), bytes unchanged."""
    return _load(conn, target, quote, list(copy.columns), copy.hex_columns, _bytes_of(copy))


def _load(
    conn: Connection,
    target: str,
    quote: Callable[[str], str],
    columns: list[str],
    hex_columns: AbstractSet[str],
    fill: "Fill",
) -> int:
    names = [f"@v{i}" if name in hex_columns else quote(name) for i, name in enumerate(columns)]
    decode = [
        f"{quote(name)} = UNHEX(@v{i})" for i, name in enumerate(columns) if name in hex_columns
    ]
    statement = (
        f"LOAD DATA LOCAL INFILE %s INTO TABLE {target} CHARACTER SET utf8mb4 "
        "FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n' "
        f"({', '.join(names)})" + (f" SET {', '.join(decode)}" if decode else "")
    )
    with _fifo() as path:
        feeder = _Feeder(path, fill)
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


# Writes rows into the FIFO, yielding the rows written after each piece.
Fill = Callable[[pa.NativeFile], Iterator[int]]


def _csv_of(batches: Iterable[pa.RecordBatch]) -> Fill:
    def fill(sink: pa.NativeFile) -> Iterator[int]:
        writer: csv.CSVWriter | None = None
        for batch in batches:
            spelled = _spelled(batch)
            if writer is None:
                writer = csv.CSVWriter(sink, spelled.schema, write_options=_OPTIONS)
            writer.write_batch(spelled)
            yield batch.num_rows

    return fill


def _bytes_of(copy: TextCopy) -> Fill:
    def fill(sink: pa.NativeFile) -> Iterator[int]:
        for chunk in copy.chunks:
            sink.write(chunk.data)
            yield chunk.num_rows

    return fill


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
    """Fills the FIFO; keeps the error that stopped it, if any."""

    def __init__(self, path: str, fill: Fill) -> None:
        super().__init__(name="copyjob-load-feeder", daemon=True)
        self._path = path
        self._fill = fill
        self._stopping = threading.Event()
        self.rows = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            # Opening blocks until the driver opens the FIFO to read it.
            with pa.OSFile(self._path, "wb") as sink:
                for rows in self._fill(sink):
                    self.rows += rows
                    if self._stopping.is_set():
                        return
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


def finite_floats(batch: pa.RecordBatch) -> pa.RecordBatch:
    """NaN and infinities as NULL, with a warning: MySQL's FLOAT and DOUBLE cannot hold them."""
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_floating(column.type):
            finite = pc.is_finite(column)
            dropped = pc.sum(pc.invert(finite)).as_py()
            if dropped:
                log.warning(
                    "column %r: %d NaN or infinite values written as NULL (MySQL has none)",
                    field.name,
                    dropped,
                )
                column = pc.if_else(finite, column, pa.scalar(None, column.type))
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)
