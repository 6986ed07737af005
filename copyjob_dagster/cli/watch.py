"""Follow a run's event log while `copyjob run` executes it: a progress bar per table on a
terminal, plain lines (every few seconds per table) when the output goes to a file or a pipe.

The tables log their progress (`progress.ProgressLog`), start and failure into the run's event
log, the same log the UI shows, and each records its materialization there. A thread of this
process polls that log through the instance, finding the run by a tag of its own. This keeps
execution in the main thread (Ctrl-C is Dagster's to handle), shows runs whatever executes them,
and works with any instance storage, since polling needs nothing but reads.
"""

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any, Protocol

import dagster as dg
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from copyjob_dagster.defs import ROWS_READ, SECONDS
from copyjob_dagster.engine import progress

POLL_SECONDS = 0.5
PLAIN_EVERY_SECONDS = 5.0


class _View(Protocol):
    def update(self, table: str, report: progress.Progress) -> None: ...

    def done(self, table: str, rows: int, seconds: float) -> None: ...

    def failed(self, table: str) -> None: ...

    def label(self, table: str) -> str: ...

    def say(self, line: str) -> None:
        """A line above the progress: the run started, a table's attempt failed."""
        ...

    def close(self) -> None: ...


@contextmanager
def show_progress(
    console: Console,
    run_tags: Mapping[str, str],
    tables: Mapping[str, str],
    keys: Mapping[dg.AssetKey, str],
    instance: dg.DagsterInstance | None = None,
) -> Iterator[None]:
    """Show the progress of the run tagged `run_tags` while the body executes it.

    `tables` labels the tables by source table name, `keys` names the table of each asset key.
    The run's log is read to its end after the body, so every table ends shown as done or failed.
    `instance`: the one the body executes the run on, when this process has it (its storage is
    already open: no second instance to start), else the configured one.
    """
    view: _View = _Bars(console, tables) if console.is_terminal else _Lines(console, tables)
    stop = threading.Event()
    follower = threading.Thread(
        target=_follow,
        args=(run_tags, keys, view, stop, console, instance),
        name="copyjob-progress",
    )
    follower.start()
    try:
        yield
    finally:
        stop.set()
        follower.join()
        view.close()


def _follow(
    run_tags: Mapping[str, str],
    keys: Mapping[dg.AssetKey, str],
    view: _View,
    stop: threading.Event,
    console: Console,
    shared: dg.DagsterInstance | None,
) -> None:
    try:
        with nullcontext(shared) if shared else dg.DagsterInstance.get() as instance:
            run_id, cursor = None, None
            while True:
                finished = stop.is_set()  # then one more read drains the log
                if run_id is None:
                    runs = instance.get_runs(filters=dg.RunsFilter(tags=dict(run_tags)), limit=1)
                    run_id = runs[0].run_id if runs else None
                    if run_id is not None:
                        view.say(f"run {run_id} started")
                if run_id is not None:
                    page = instance.get_records_for_run(run_id, cursor=cursor)
                    cursor = page.cursor
                    for record in page.records:
                        _show(record.event_log_entry, keys, view)
                    if page.has_more:
                        continue
                if finished:
                    return
                stop.wait(POLL_SECONDS)
    except Exception as exc:  # noqa: BLE001 - progress is a courtesy; the run goes on
        console.print(f"(progress not shown: {exc})", highlight=False)


def _show(entry: Any, keys: Mapping[dg.AssetKey, str], view: _View) -> None:
    kind = entry.dagster_event_type
    if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
        materialization = entry.asset_materialization
        metadata = materialization.metadata
        if ROWS_READ in metadata and materialization.asset_key in keys:
            table = keys[materialization.asset_key]
            view.done(table, int(metadata[ROWS_READ].value), float(metadata[SECONDS].value))
    elif kind is None:
        text = entry.user_message
        parsed, failed = progress.parse(text), progress.parse_failed(text)
        retried = progress.parse_retry(text)
        if parsed is not None:
            view.update(parsed[0], parsed[1])
        elif failed is not None:
            view.failed(failed[0])
        elif retried is not None:
            view.say(f"{view.label(retried)}: {text}")


class _Bars:
    """A rich progress bar per table: rows of the estimate, rows per second, time left."""

    def __init__(self, console: Console, tables: Mapping[str, str]) -> None:
        self._tables = tables
        self._tasks: dict[str, TaskID] = {}
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rows]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[left]}"),
            console=console,
        )
        self._bars.start()

    def _task(self, table: str) -> TaskID | None:
        if table not in self._tables:
            return None
        if table not in self._tasks:
            self._tasks[table] = self._bars.add_task(
                self._tables[table], total=None, rows="", rate="", left=""
            )
        return self._tasks[table]

    def update(self, table: str, report: progress.Progress) -> None:
        task = self._task(table)
        if task is None:
            return
        estimate = f" of ~{report.estimate:,}" if report.estimate is not None else ""
        total = max(report.estimate, report.rows) if report.estimate is not None else None
        self._bars.update(
            task,
            completed=report.rows,
            total=total,
            rows=f"{report.rows:,}{estimate} rows",
            rate=f"{report.rate:,.0f} rows/s" if report.rate else "",
            left=f"{progress.duration(report.seconds_left)} left"
            if report.seconds_left is not None
            else "",
        )

    def done(self, table: str, rows: int, seconds: float) -> None:
        task = self._task(table)
        if task is not None:
            rate = progress.Progress(rows, rows, seconds).rate
            self._bars.update(
                task,
                completed=rows,
                total=rows or 1,
                rows=f"{rows:,} rows",
                rate=f"{rate:,.0f} rows/s" if rate else "",
                left=f"done in {seconds:.1f} s",
            )

    def failed(self, table: str) -> None:
        task = self._task(table)
        if task is not None:
            self._bars.update(task, left="failed")
            self._bars.stop_task(task)

    def say(self, line: str) -> None:
        self._bars.console.print(line, highlight=False, soft_wrap=True)

    def label(self, table: str) -> str:
        return self._tables.get(table, table)

    def close(self) -> None:
        self._bars.stop()


class _Lines:
    """One line per table when it starts, then every PLAIN_EVERY_SECONDS, and when it ends."""

    def __init__(self, console: Console, tables: Mapping[str, str]) -> None:
        self._console = console
        self._tables = tables
        self._last: dict[str, float] = {}

    def update(self, table: str, report: progress.Progress) -> None:
        now = time.monotonic()
        if table not in self._tables or now - self._last.get(table, -PLAIN_EVERY_SECONDS) < (
            PLAIN_EVERY_SECONDS
        ):
            return
        self._last[table] = now
        self.say(f"{self._tables[table]}: {report.describe()}")

    def done(self, table: str, rows: int, seconds: float) -> None:
        if table in self._tables:
            rate = progress.Progress(rows, rows, seconds).rate
            per_second = f", {rate:,.0f} rows/s" if rate else ""
            self.say(f"{self._tables[table]}: done, {rows:,} rows in {seconds:.1f} s{per_second}")

    def failed(self, table: str) -> None:
        if table in self._tables:
            self.say(f"{self._tables[table]}: failed")

    def say(self, line: str) -> None:
        self._console.print(line, highlight=False, soft_wrap=True)

    def label(self, table: str) -> str:
        return self._tables.get(table, table)

    def close(self) -> None:
        pass
