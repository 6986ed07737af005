"""A timestamp watermark held below the transactions still open at the source.

A transaction that began before a copy and commits after it writes rows whose database-clock
time lies below the highest value the copy saw. The source says, just before the copy's
snapshot, when the oldest transaction that could still commit rows began (`bound`, see
`stores/open_transactions.py`); the watermark the copy records is at most that time less
CLOCK_MARGIN. The copy still reads every row up to the column's maximum: the rows above the
recorded watermark are read again by the next run, and the writes are idempotent for a window
(merge by key, append replacing the window, the fingerprint at the watermark), so none is
written twice. Integer, decimal, date and string cursors are not bounded: their values come
from sequences or applications, not from the transaction's clock (docs/incremental.md,
"Late commits").
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine.planning import CopyPlan
from copyjob_dagster.engine.watermark import Watermark, WatermarkKind
from copyjob_dagster.engine.windows import RowsAt, fingerprint
from copyjob_dagster.stores import (
    OpenTransaction,
    OpenTransactions,
    Source,
    TableReader,
    TransactionAwareSource,
    capabilities_of,
)

# MySQL's innodb_trx.trx_started is cut to the second, and a statement's NOW() is taken a moment
# before InnoDB registers its transaction; PostgreSQL rounds a timestamp(0) column to the
# nearest second. One second covers both, and a clock slewed by NTP.
CLOCK_MARGIN = timedelta(seconds=1)
BOUNDED_KINDS = ("timestamp", "timestamp_tz")


@dataclass(frozen=True)
class LateCommits:
    """What the open transactions did to one copy's watermark."""

    transactions: OpenTransactions
    warn_after: float  # seconds: the table's open_transaction_warning
    held_back: timedelta = timedelta(0)  # the window's end less the recorded watermark

    @property
    def blocking(self) -> OpenTransaction | None:
        """The open transaction that held the watermark back, if one did."""
        return self.transactions.oldest if self.held_back > timedelta(0) else None

    def describe(self) -> str:
        """The bound and what set it, for people."""
        bound = self.transactions.bound
        if bound is None:
            return f"unknown: {self.transactions.unknown}"
        text = f"bound {bound.isoformat(sep=' ', timespec='microseconds')}"
        oldest = self.transactions.oldest
        return text + (f" by the oldest open transaction: {oldest.describe()}" if oldest else "")

    @property
    def warning(self) -> str | None:
        """Why late commits need attention, or None: the bound is unknown, or an open
        transaction holds the watermark back longer than `warn_after`."""
        if self.transactions.unknown:
            return (
                f"open transactions at the source are not known ({self.transactions.unknown}); "
                f"rows that commit late are caught only by lookback"
            )
        blocking = self.blocking
        if blocking is None or self.held_back.total_seconds() <= self.warn_after:
            return None
        return (
            f"an open transaction at the source ({blocking.describe()}) holds the watermark "
            f"{self.held_back.total_seconds():,.0f} s below the rows copied; they are read again "
            f"each run until it ends"
        )


def watches_open_transactions(job: CopyJob) -> bool:
    """Whether the job's copies are incremental from a source that reports open transactions
    (whether a table's cursor is a timestamp is known only once its source is described)."""
    return job.mode == "incremental" and capabilities_of(job.source).open_transactions


def observe(source: Source, kind: WatermarkKind) -> OpenTransactions | None:
    """The open transactions, for a timestamp cursor on a source that can tell; call it before
    the snapshot opens."""
    if kind not in BOUNDED_KINDS or not isinstance(source, TransactionAwareSource):
        return None
    return source.open_transactions()


def next_watermark(
    reader: TableReader,
    plan: CopyPlan,
    kind: WatermarkKind,
    value: Any,
    previous: Watermark | None,
    taken: RowsAt | None,
) -> Watermark | None:
    """The watermark at `value` (`held_watermark`'s; `previous` when None, the window being
    empty), with the fingerprint of the rows at its value: as `taken` from the window's
    batches (`windows.rows_at_watermark`), or read now where it could not be."""
    if value is None:
        return previous
    found = taken.result() if taken is not None else None
    rows_at_value, fingerprint_at_value = found or fingerprint(reader, plan, value)
    return Watermark.of(kind, value, rows_at_value, fingerprint_at_value)


def held_watermark(
    kind: WatermarkKind,
    high: Any,
    transactions: OpenTransactions | None,
    previous: Watermark | None,
    warn_after: float,
) -> tuple[Any, LateCommits | None]:
    """The watermark to record for a window ending at `high` (None: the window is empty): at
    most the bound less the margin, never below `previous` (a watermark never goes backwards)."""
    if transactions is None:
        return high, None
    if high is None:
        return None, LateCommits(transactions, warn_after)
    if kind == "timestamp_tz" and high.tzinfo is None:
        high = high.replace(tzinfo=UTC)  # MySQL's TIMESTAMP, read in the session's UTC
    value = high
    if transactions.bound is not None:
        value = min(high, _ceiling(kind, transactions))
    if previous is not None and value < previous.value:
        value = previous.value
    return value, LateCommits(transactions, warn_after, high - value)


def _ceiling(kind: WatermarkKind, transactions: OpenTransactions) -> datetime:
    assert transactions.bound is not None
    floor = transactions.bound - CLOCK_MARGIN
    if kind == "timestamp_tz":
        return floor
    # A naive column holds the wall time of the session that stamped it: the server's default.
    return (floor + transactions.naive_offset).astimezone(UTC).replace(tzinfo=None)
