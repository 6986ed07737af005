"""The tables of one run, copied by a bounded pool of threads inside the job's one step.

A table costs its copy, not a process: each table used to be a step of its own (a process,
seconds of start-up and event writing however few rows it copied). Each table's work is a
generator, the body an asset of one table would have. A worker thread runs it; every event it
yields is handed to the step's own thread, which yields it to Dagster and only then lets the
worker go on, so a table lock held around the work spans the recording of its materialization
exactly as it did when the table was its own step. Log lines travel the same way: only the
step's thread talks to Dagster's log.

A table that fails does not stop the others. A transient error (or an unexpected one, as
Dagster's retry policy would) is retried in its thread, up to the job's `retries:`, before the
table counts as failed; a table that recorded its materialization is never copied again.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from copyjob_dagster.engine import progress
from copyjob_dagster.errors import CopyJobError

Log = Callable[[str], None]


@dataclass(frozen=True)
class Logs:
    """The run's log, by level."""

    info: Log
    warning: Log
    error: Log


# A table's work: given its logs and the event set when the run ends (a copy in progress
# checks it and gives up before it commits), yields the events to record.
Work = Callable[[Logs, threading.Event], Iterator[Any]]
_JOIN_SECONDS = 10.0  # how long an ending run waits for its tables to give up
# A table's turn at the source, held while it copies (the source pool's slot); it gives up
# waiting when the event is set (the run ended).
Slot = Callable[[str, threading.Event], AbstractContextManager[None]]


@dataclass(frozen=True)
class Retry:
    """How a table's failed attempt is retried: the job's `retries:`."""

    max_retries: int
    delay_seconds: float
    backoff: str  # exponential | linear | constant

    def wait(self, attempt: int) -> float:
        """Seconds before attempt `attempt + 1`, after `attempt` failed."""
        if self.backoff == "exponential":
            return self.delay_seconds * 2 ** (attempt - 1)
        if self.backoff == "linear":
            return self.delay_seconds * attempt
        return self.delay_seconds


@dataclass(frozen=True)
class TableFailure:
    table: str
    error: BaseException


class TablesFailed(Exception):
    """Some tables failed; the others are recorded."""

    def __init__(self, failures: list[TableFailure], of: int) -> None:
        self.failures = failures
        lines = [f"{f.table}: {_message(f.error)}" for f in failures]
        super().__init__(f"{len(failures)} of {of} tables failed:\n  " + "\n  ".join(lines))


def run_tables(
    works: Mapping[str, Work], threads: int, logs: Logs, slot: Slot, retry: Retry | None
) -> Iterator[Any]:
    """Run every table's work, at most `threads` at once, yielding their events as they come.

    Raises `TablesFailed` at the end, naming each table that failed (after its retries)."""
    inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for table in works:
        todo.put(table)
    closing = threading.Event()
    worker = _Worker(works, todo, inbox, slot, retry, closing)
    workers = [
        # Daemon threads: a run that is killed ends without waiting for them.
        threading.Thread(target=worker.run, name=f"copyjob-table-{index}", daemon=True)
        for index in range(max(1, min(threads, len(works))))
    ]
    for thread in workers:
        thread.start()
    failures: list[TableFailure] = []
    ended = 0
    try:
        while ended < len(works):
            kind, item = inbox.get()
            if kind == "log":
                level, line = item
                getattr(logs, level)(line)
            elif kind == "event":
                event, recorded = item
                yield event
                recorded.set()
            else:
                ended += 1
                if item is not None:
                    failures.append(item)
                    logs.error(progress.failed_message(item.table, _message(item.error)))
    finally:
        closing.set()  # an interrupted run: copies in progress give up before they commit
        deadline = time.monotonic() + _JOIN_SECONDS
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
    if failures:
        raise TablesFailed(sorted(failures, key=lambda f: f.table), len(works))


@dataclass
class _Worker:
    works: Mapping[str, Work]
    todo: queue.SimpleQueue[str]
    inbox: queue.Queue[tuple[str, Any]]
    slot: Slot
    retry: Retry | None
    closing: threading.Event

    def run(self) -> None:
        while not self.closing.is_set():
            try:
                table = self.todo.get_nowait()
            except queue.Empty:
                return
            self.inbox.put(("end", self._table(table)))

    def _table(self, table: str) -> TableFailure | None:
        attempt = 0
        while True:
            attempt += 1
            recorded_any = False
            try:
                with self.slot(table, self.closing):
                    for event in self.works[table](self._logs, self.closing):
                        recorded_any = True
                        self._record(event)
                return None
            except Exception as exc:  # noqa: BLE001 - a table's failure is reported, not raised
                if recorded_any or not self._retries(exc, attempt):
                    return TableFailure(table, exc)
                wait = self.retry.wait(attempt) if self.retry else 0
                self._logs.info(progress.retry_message(table, attempt, _message(exc), wait))
                if self.closing.wait(wait):
                    return TableFailure(table, exc)

    def _retries(self, exc: Exception, attempt: int) -> bool:
        """A user's mistake is not retried; a transient or unexpected error is, while the job's
        retries last."""
        if self.retry is None or attempt > self.retry.max_retries:
            return False
        return not isinstance(exc, CopyJobError) or exc.transient

    def _record(self, event: Any) -> None:
        recorded = threading.Event()
        self.inbox.put(("event", (event, recorded)))
        while not recorded.wait(0.5):
            if self.closing.is_set():
                raise CopyJobError("the run ended before this table's copy was recorded")

    @property
    def _logs(self) -> Logs:
        """Logs that hand their lines to the step's thread."""
        return Logs(
            info=lambda line: self.inbox.put(("log", ("info", line))),
            warning=lambda line: self.inbox.put(("log", ("warning", line))),
            error=lambda line: self.inbox.put(("log", ("error", line))),
        )


def _message(error: BaseException) -> str:
    text = str(error).strip()
    return text if isinstance(error, CopyJobError) else f"{type(error).__name__}: {text}"
