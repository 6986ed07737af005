"""Test-only hooks installed in a fault run's own process (see fault_runner.py), by name.

Notes, for the test to wait on (each a file holding the time.time_ns() it was written at):
  held      the run holds the table's copy lock (noted just after taking it)
  released  the run is about to release it (noted just before)
  waiting   the run asked for the copy lock and was refused: another run holds it
  planned   the run's window is planned: its snapshot is open, nothing is written yet

Hooks (any of them notes):
  trace        only note
  hold         after `planned`, wait until the test says go (`Runner.go`)
  gate         before asking for the copy lock, note `gated` and wait until the test says go

Negative controls: each switches one protection off in this process, never in the product.
  no-lock      the copy lock is not taken (the write transaction's check of it is skipped too,
               as for a run that never took it)
  no-guard     a run records its watermark even when another run recorded one meanwhile
  no-staging   a full copy drops the table and writes straight into it, each batch committed
  parts-alone  a split copy writes each part in a transaction of its own (the first part
               replaces the table on an initial load, each next one is appended)
  parts-latest a split Delta read's parts read one after another, each after the first
               opening the table's latest version as it starts (not the version opened first)
"""

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pyarrow as pa

from copyjob_dagster.defs import assets
from copyjob_dagster.engine import copying, splitting
from copyjob_dagster.stores import locking
from copyjob_dagster.stores.mysql import MySQLStore
from copyjob_dagster.stores.sql import SqlStore

NAMES = {
    "trace",
    "hold",
    "gate",
    "no-lock",
    "no-guard",
    "no-staging",
    "parts-alone",
    "parts-latest",
}
GO_TIMEOUT_SECONDS = 120

Notes = Callable[[str], Path]


def install(hooks: Iterable[str], note_file: Notes) -> None:
    hooks = set(hooks)
    if not hooks:
        return
    unknown = hooks - NAMES
    assert not unknown, f"unknown hooks {unknown}"

    def note(name: str) -> None:
        note_file(name).write_text(str(time.time_ns()))

    def wait_to_go() -> None:
        deadline = time.monotonic() + GO_TIMEOUT_SECONDS
        while not note_file("go").exists():
            assert time.monotonic() < deadline, "the test never said go"
            time.sleep(0.005)

    _trace_the_lock(note, "no-lock" in hooks, wait_to_go if "gate" in hooks else None)
    _note_the_plan(note, wait_to_go if "hold" in hooks else None)
    if "no-guard" in hooks:
        assets._refuse_if_overtaken = lambda *args, **kwargs: None
    if "no-staging" in hooks:
        for store in (SqlStore, MySQLStore):
            store.replace = _unstaged_replace  # type: ignore[method-assign]
    if "parts-alone" in hooks:
        _write_parts_alone()
    if "parts-latest" in hooks:
        _parts_read_the_latest_version()


def _trace_the_lock(
    note: Callable[[str], None], without_lock: bool, gate: Callable[[], None] | None
) -> None:
    """Note `waiting`, `held` and `released` around the copy lock (or skip the lock); with a
    gate, note `gated` and pass the gate first."""
    table_lock = assets.table_lock

    @contextmanager
    def traced(*args: Any, **kwargs: Any) -> Iterator[None]:
        if gate is not None:
            note("gated")
            gate()
        with nullcontext() if without_lock else table_lock(*args, **kwargs):
            note("held")
            try:
                yield
            finally:
                note("released")

    assets.table_lock = traced
    wait_for = locking.wait_for

    def noting(acquire: Callable[[], bool], timeout_seconds: float, what: str) -> None:
        def attempt() -> bool:
            taken = acquire()
            if not taken:
                note("waiting")
            return taken

        wait_for(attempt, timeout_seconds, what)

    for name, module in list(sys.modules.items()):
        if name.startswith("copyjob_dagster") and getattr(module, "wait_for", None) is wait_for:
            module.wait_for = noting  # type: ignore[attr-defined]


def _note_the_plan(note: Callable[[str], None], hold: Callable[[], None] | None) -> None:
    plan_window = copying.plan_window

    def planned(*args: Any) -> Any:
        window = plan_window(*args)
        note("planned")
        if hold is not None:
            hold()
        return window

    copying.plan_window = planned


def _unstaged_replace(
    self: SqlStore,
    table: str,
    schema: pa.Schema,
    primary_key: tuple[str, ...],
    batches: Iterable[pa.RecordBatch],
) -> int:
    with self.engine.begin() as conn:
        self.drop_if_exists(conn, table)
        target = self.create_table(conn, table, schema, primary_key)
    rows = 0
    for batch in batches:
        with self.engine.begin() as conn:
            rows += self.write_batches(conn, target, [batch])
    self._tables.pop(table, None)
    return rows


_PART = [0]  # the part of the batch read last


def _one_part_after_another(
    self: splitting.SplitReader,
    columns: list[str],
    batch_rows: int,
    window: Any = None,
    part: Any = None,
) -> Iterator[pa.RecordBatch]:
    main = self._readers[0]
    if part is not None:
        yield from main.batches(columns, batch_rows, window, part)
        return
    low, high = main.span(self._column, window)
    ranges = splitting.key_ranges(self._column, low, high, len(self._readers))
    self.parts_read = len(ranges)
    for index, (reader, key_range) in enumerate(zip(self._readers, ranges, strict=False)):
        for batch in reader.batches(columns, batch_rows, window, key_range):
            _PART[0] = index
            yield batch


def _write_parts_alone() -> None:
    splitting.SplitReader.batches = _one_part_after_another  # type: ignore[method-assign]
    for store in (SqlStore, MySQLStore):
        store.replace = _each_part_alone(store.replace)  # type: ignore[method-assign]


def _each_part_alone(replace: Callable[..., int]) -> Callable[..., int]:
    def write(
        self: SqlStore,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
    ) -> int:
        stream = iter(batches)

        def pull() -> tuple[pa.RecordBatch, int] | None:
            batch = next(stream, None)  # the pipeline is lazy: _PART is this batch's part
            return None if batch is None else (batch, _PART[0])

        head = [pull()]

        def one_part() -> Iterator[pa.RecordBatch]:
            part = head[0][1] if head[0] else None
            while head[0] is not None and head[0][1] == part:
                yield head[0][0]
                head[0] = pull()

        rows = replace(self, table, schema, primary_key, one_part())
        while head[0] is not None:
            self._tables.pop(table, None)
            target = self.reflect(table)
            assert target is not None
            with self.engine.begin() as conn:
                rows += self.write_batches(conn, target, one_part())
        return rows

    return write


class _LatestVersion:
    """A part of a split Delta read that opens the table's latest version as it starts."""

    def __init__(self, store: Any, table: str) -> None:
        self._store, self._table = store, table

    def batches(self, *args: Any, **kwargs: Any) -> Iterator[pa.RecordBatch]:
        with self._store.open_reader(self._table) as reader:
            yield from reader.batches(*args, **kwargs)


def _parts_read_the_latest_version() -> None:
    from copyjob_dagster.stores.delta import DeltaStore  # deltalake only in runs that need it

    @contextmanager
    def open_split(self: DeltaStore, table: str, parts: int) -> Iterator[tuple[Any, list[Any]]]:
        with self.open_reader(table) as main:
            yield main, [_LatestVersion(self, table) for _ in range(parts - 1)]

    DeltaStore.open_split = open_split  # type: ignore[method-assign,assignment]
    splitting.SplitReader.batches = _one_part_after_another  # type: ignore[method-assign]
