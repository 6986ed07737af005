"""A copy's progress as one line of text: written into the run's log, read back by `copyjob run`.

The steps of a run execute in other processes (Dagster's multiprocess executor), so progress
reaches the command line the way it reaches the UI: as log messages in the run's event log. The
message is meant for people, and is also parsed back here, so its wording lives in this module
only. Never imports Dagster.
"""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

LOG_EVERY_SECONDS = 2.0
# A table estimated at least this large reports its start at once: it will take a while.
REPORT_AT_ONCE_ROWS = 100_000
_PREFIX = "progress "
_MESSAGE = re.compile(
    r"^progress (?P<table>.+?): (?P<rows>[\d,]+)(?: of ~(?P<estimate>[\d,]+))? rows"
    r"(?: \(\d+%\))? in (?P<elapsed>[\d.]+) s"
)


@dataclass(frozen=True)
class Progress:
    """Rows copied so far of a table, its estimated total, and the seconds since the start."""

    rows: int
    estimate: int | None
    elapsed: float

    @property
    def rate(self) -> float | None:
        """Rows per second."""
        return self.rows / self.elapsed if self.elapsed > 0 and self.rows else None

    @property
    def seconds_left(self) -> float | None:
        if self.estimate is None or self.rate is None or self.rows > self.estimate:
            return None
        return (self.estimate - self.rows) / self.rate

    def describe(self) -> str:
        """`12,000 of ~50,000 rows (24%) in 2.3 s, 5,217 rows/s, about 8 s left`."""
        text = f"{self.rows:,}"
        if self.estimate is not None:
            percent = min(100, int(100 * self.rows / self.estimate)) if self.estimate else 100
            text += f" of ~{self.estimate:,} rows ({percent}%)"
        else:
            text += " rows"
        text += f" in {self.elapsed:.1f} s"
        if self.rate is not None:
            text += f", {self.rate:,.0f} rows/s"
        if self.seconds_left is not None:
            text += f", about {duration(self.seconds_left)} left"
        return text


def message(table: str, progress: Progress) -> str:
    return f"{_PREFIX}{table}: {progress.describe()}"


def parse(text: str) -> tuple[str, Progress] | None:
    """The table and progress of a `message`, or None for any other log message."""
    match = _MESSAGE.match(text) if text.startswith(_PREFIX) else None
    if match is None:
        return None
    estimate = match.group("estimate")
    return match.group("table"), Progress(
        rows=int(match.group("rows").replace(",", "")),
        estimate=int(estimate.replace(",", "")) if estimate else None,
        elapsed=float(match.group("elapsed")),
    )


def duration(seconds: float) -> str:
    """`8 s`, `2 min 5 s`, `1 h 3 min`."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


class ProgressLog:
    """A progress callback for the engine that writes a `message` to `log` once the copy has
    run `every_seconds` (at once for a table estimated at `REPORT_AT_ONCE_ROWS` or more), then
    one every `every_seconds`: a long copy does not flood the run's
    log, and a small table, done sooner, writes none (each line is an event the instance
    stores, which costs a run of many small tables more than their copies)."""

    def __init__(
        self, table: str, log: Callable[[str], None], every_seconds: float = LOG_EVERY_SECONDS
    ) -> None:
        self._table = table
        self._log = log
        self._every = every_seconds
        self._last: float | None = None

    def __call__(self, rows: int, estimate: int | None, elapsed: float) -> None:
        now = time.monotonic()
        small = estimate is None or estimate < REPORT_AT_ONCE_ROWS
        if self._last is None and elapsed < self._every and small:
            return
        if self._last is not None and now - self._last < self._every:
            return
        self._last = now
        self._log(message(self._table, Progress(rows, estimate, elapsed)))


# A table's retries and failure in a run where tables share one step: the run's log tells them
# (`copyjob history`, `copyjob run`'s progress); its end is its materialization.
_RETRY = re.compile(r"^retrying (?P<table>.+?) in ")
_FAILED = re.compile(r"^failed (?P<table>.+?): (?P<error>.*)$", re.DOTALL)


def failed_message(table: str, error: str) -> str:
    return f"failed {table}: {error}"


def retry_message(table: str, attempt: int, error: str, wait: float) -> str:
    return f"retrying {table} in {wait:g} s (attempt {attempt} failed: {error})"


def parse_retry(text: str) -> str | None:
    """The table a `retry_message` names, or None for any other message."""
    match = _RETRY.match(text)
    return match.group("table") if match else None


def parse_failed(text: str) -> tuple[str, str] | None:
    """The table and error of a `failed_message`, or None for any other message."""
    match = _FAILED.match(text)
    return (match.group("table"), match.group("error")) if match else None
