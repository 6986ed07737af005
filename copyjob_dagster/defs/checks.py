"""What is checked about a table's copy: row-count parity, and freshness against the schedule.

Parity is an asset check evaluated in the copy's own step, right after the destination commits
and while the table's copy lock is still held, so that no other copy changes either count in
between. It can also be executed alone from the UI: it then checks the latest copy.

- Full copy: the destination holds as many rows as the copy read from the source's snapshot.
  Where the destination loaded them into a staging table that the copy created and swapped in
  (MySQL's LOAD DATA), its report of that load, which the load's own transaction holds to the
  rows sent (no row skipped, no warning), is the table's count: no `COUNT(*)` reads it again.
- Incremental copy: the destination holds as many rows as the source holds with an incremental
  value at or below the watermark (rows with a NULL value are never copied, so never counted).
  Fewer is an error: rows that committed late with a smaller value were missed (set `lookback`),
  or rows were deleted at the destination. More is a warning, not an error: neither write
  method deletes, so a row deleted at the source stays copied, and `write: append` keeps every
  version of a row that was updated at the source, where `merge` keeps one per key.

Freshness is Dagster's own: a time-window policy on the asset, derived from the job's schedule,
which the UI shows and the daemon evaluates between runs.
"""

import functools
from collections.abc import Mapping
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import dagster as dg
from croniter import croniter
from croniter.croniter import CroniterBadDateError

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.defs import naming
from copyjob_dagster.defs.cdc import check_spec
from copyjob_dagster.defs.metadata import (
    HELD_BACK_SECONDS,
    LATE_COMMIT_WARNING,
    OPEN_TRANSACTION_BOUND,
    ROWS_READ,
    watermark_from_metadata,
)
from copyjob_dagster.engine import (
    TableStores,
    destination_rows,
    source_rows_up_to,
    watches_open_transactions,
)
from copyjob_dagster.errors import CopyJobError

ROW_COUNT_PARITY = "row_count_parity"
OPEN_TRANSACTIONS = "open_transactions"
EXPECTED_ROWS = "copyjob/expected_rows"
DESTINATION_ROWS = "copyjob/destination_rows"

FRESHNESS_MINIMUM_GRACE = timedelta(minutes=5)
# Cron ticks are enumerated from a fixed Monday, so that the windows never depend on the day
# the definitions load.
_REFERENCE = datetime(2024, 1, 1)
_MATCHING_DAYS = 400  # more than a year of daily ticks: every month end is seen
_DAYS_SEARCHED = timedelta(days=9 * 366)  # two 29ths of February, at least


def check_specs(job: CopyJob, table: TableConfig) -> list[dg.AssetCheckSpec]:
    if job.is_cdc(table):
        return [check_spec(job, table, naming.asset_key(job, table))]
    held = (
        "as many rows as the source held when it was copied"
        if job.mode == "full"
        else "as many rows as the source holds up to the watermark"
    )
    specs = [
        dg.AssetCheckSpec(
            ROW_COUNT_PARITY,
            asset=naming.asset_key(job, table),
            description=f"The destination table holds {held}.",
        )
    ]
    if watches_open_transactions(job):
        specs.append(
            dg.AssetCheckSpec(
                OPEN_TRANSACTIONS,
                asset=naming.asset_key(job, table),
                description="No transaction open at the source holds the watermark back more "
                f"than {table.open_transaction_warning:g} s, and the source lets copyjob see "
                "its open transactions.",
            )
        )
    return specs


def open_transactions(metadata: Mapping[str, Any] | None) -> dg.AssetCheckResult:
    """Whether the open transactions at the source, as the copy of `metadata` found them, kept
    its watermark back too long, or could not be seen (see late_commits.py)."""
    if metadata is None:
        return _result(
            False,
            "the table has not been copied yet",
            dg.AssetCheckSeverity.WARN,
            check=OPEN_TRANSACTIONS,
        )
    if LATE_COMMIT_WARNING in metadata:
        warning = str(metadata[LATE_COMMIT_WARNING].value)
        return _result(False, warning, dg.AssetCheckSeverity.WARN, check=OPEN_TRANSACTIONS)
    if OPEN_TRANSACTION_BOUND not in metadata:
        return _result(
            True,
            "no bound applies: the incremental column is not a timestamp, or the source cannot "
            "report its open transactions; `lookback` is what catches late commits",
            check=OPEN_TRANSACTIONS,
        )
    held = float(metadata[HELD_BACK_SECONDS].value)
    return _result(
        True,
        f"the open transactions bounded the watermark at {metadata[OPEN_TRANSACTION_BOUND].value}"
        f"; it sits {held:g} s below the rows copied, which the next run reads again",
        check=OPEN_TRANSACTIONS,
    )


def row_count_parity(
    job: CopyJob,
    table: TableConfig,
    metadata: Mapping[str, Any] | None,
    stores: TableStores | None = None,
    loaded: int | None = None,
) -> dg.AssetCheckResult:
    """Compare the destination's rows with the source's, after the copy `metadata` records
    (counted through the copy's own `stores`, when given). `loaded`: a full copy's rows as the
    destination reported loading them into the table it swapped in, taken for its count."""
    if metadata is None:
        return _result(False, "the table has not been copied yet", dg.AssetCheckSeverity.WARN)
    try:
        if job.mode == "full":
            expected, against = int(metadata[ROWS_READ].value), "rows the copy read"
        else:
            watermark = watermark_from_metadata(metadata)
            expected = 0 if watermark is None else source_rows_up_to(job, table, watermark, stores)
            against = (
                f"source rows with {table.incremental_column} <= {watermark.text}"
                if watermark and table.incremental_column
                else f"source rows now (the copy read version {watermark.text})"
                if watermark
                else "source rows (it held no incremental value when copied)"
            )
        reported = job.mode == "full" and loaded is not None
        actual = loaded if reported else destination_rows(job, table, stores=stores)
        compared = actual
        if _held_back(metadata) and actual is not None:
            # The rows above the held watermark are copied and will be read again.
            held = watermark_from_metadata(metadata)
            compared = destination_rows(job, table, up_to=held, stores=stores)
            against += " (the destination's rows up to it; those above are read again next run)"
    except CopyJobError as exc:
        return _result(False, f"could not count the rows: {exc}", dg.AssetCheckSeverity.WARN)
    if actual is None:
        return _result(False, f"the destination has no table {table.destination_name!r}")
    counts = {EXPECTED_ROWS: expected, DESTINATION_ROWS: actual}
    assert compared is not None
    if compared == expected:
        source = " (the destination's report of its load)" if reported else ""
        passed = f"{compared:,} rows{source}: as many as the {expected:,} {against}"
        return _result(True, passed, metadata=counts)
    difference = f"{abs(compared - expected):,} {'fewer' if compared < expected else 'more'}"
    found = f"the destination holds {compared:,} rows, {difference} than the {expected:,} {against}"
    if compared < expected:
        cause = (
            ": rows committed late with a smaller incremental value were missed (set "
            "`lookback`), or rows were deleted at the destination"
            if job.mode == "incremental"
            else ""
        )
        return _result(False, found + cause, metadata=counts)
    if job.mode == "full":
        return _result(False, f"{found}: something else writes into the table", metadata=counts)
    return _result(
        False,
        f"{found}: rows deleted at the source stay copied (unless the table sets deletes), "
        f"and write: append keeps every version of an updated row",
        dg.AssetCheckSeverity.WARN,
        counts,
    )


def _held_back(metadata: Mapping[str, Any]) -> bool:
    held = metadata.get(HELD_BACK_SECONDS)
    return held is not None and float(held.value) > 0


def _result(
    passed: bool,
    description: str,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    metadata: Mapping[str, int] | None = None,
    check: str = ROW_COUNT_PARITY,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=check,
        passed=passed,
        severity=severity,
        description=description,
        metadata={k: dg.MetadataValue.int(v) for k, v in (metadata or {}).items()},
    )


def freshness_policy(job: CopyJob) -> dg.FreshnessPolicy | None:
    """Freshness for a scheduled job: warn once the latest copy is older than the schedule's
    longest interval plus a grace (the next scheduled copy is late), fail once it is older than
    two intervals plus the grace (a scheduled copy was missed, or failed)."""
    if job.schedule is None:
        return None
    interval = longest_interval(job.schedule.cron)
    if interval is None:
        return None
    grace = max(interval / 4, FRESHNESS_MINIMUM_GRACE)
    return dg.FreshnessPolicy.time_window(
        fail_window=2 * interval + grace, warn_window=interval + grace
    )


@functools.cache
def longest_interval(cron: str) -> timedelta | None:
    """The longest wait between two ticks of a cron expression (daylight saving aside), or None
    for an expression that never fires twice.

    A cron's time fields (minute, hour) and day fields (day, month, weekday) are independent:
    it fires at every matching time of every matching day. So the longest wait is either the
    longest gap between two times of one day, or the gap from a matching day's last time to the
    next matching day's first time. Both are found from at most 1,440 + 400 ticks.
    """
    minute, hour, *day_fields = cron.split()
    times = _ticks(f"{minute} {hour} * * *", _REFERENCE + timedelta(days=1), 24 * 60)
    days = _ticks(f"0 0 {' '.join(day_fields)}", _REFERENCE + _DAYS_SEARCHED, _MATCHING_DAYS)
    if not times or len(days) < 2:
        return None
    within_a_day = max((b - a for a, b in pairwise(times)), default=timedelta(0))
    between_days = max(b - a for a, b in pairwise(days)) - (times[-1] - times[0])
    return max(within_a_day, between_days)


def _ticks(cron: str, until: datetime, limit: int) -> list[datetime]:
    """The ticks of `cron` from the reference time (included) until `until`, at most `limit`."""
    ticks = croniter(cron, _REFERENCE - timedelta(seconds=1))
    found: list[datetime] = []
    try:
        while len(found) < limit and (tick := ticks.get_next(datetime)) < until:
            found.append(tick)
    except CroniterBadDateError:
        pass  # no further tick: a day that never comes (February 30th)
    return found
