"""One Dagster asset per configured table: to materialize it is to copy the table.

Specs come first (`naming`); a job's tables are then one subsettable multi-asset, whose step
copies the selected tables on a bounded pool of threads (`parallel`). Each table's work calls the
engine and records its `CopyResult` as the table's own materialization, with the row-count check
of the copy it made (`checks`). A transient error (a lost connection, a deadlock) is retried, up
to the job's `retries:`; a user's mistake (bad config, missing column, wrong password) fails the
table with the error's message, and is not retried. A failed table fails the run, naming it,
but not the other tables.
"""

import threading
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from typing import Any

import dagster as dg
from pydantic import Field

from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.defs import cdc, checks, naming, operations, parallel
from copyjob_dagster.defs.concurrency import parallel_tables, source_slot
from copyjob_dagster.defs.metadata import FAILED_TABLES, ROW_COUNT, copy_metadata
from copyjob_dagster.defs.monitoring import lifetime_metadata
from copyjob_dagster.engine import (
    Backfill,
    CopyResult,
    ProgressLog,
    Watermark,
    copy_table,
    describe_sources,
    maintain_table,
    shared_engines,
    table_lock,
    table_stores,
    watches_open_transactions,
)
from copyjob_dagster.errors import CopyJobError, WatermarkError


class CopyConfig(dg.Config):
    """Run config, shown in the launchpad."""

    full_refresh: bool = Field(
        False, description="Incremental tables: forget the watermark and copy the table anew."
    )
    allow_mass_delete: bool = Field(
        False,
        description="Tables with deletes: delete or mark rows even beyond max_delete_share.",
    )
    reset_watermark: bool = Field(
        False,
        description="Instead of copying: forget the watermark (the next run loads the table "
        "anew), recorded in the asset's history with `reason`.",
    )
    set_watermark: str | None = Field(
        None,
        description="Instead of copying: set the watermark to this value (rewind or skip; the "
        "next run copies from it, inclusive), recorded in the asset's history with `reason`.",
    )
    reason: str | None = Field(
        None, description="Why: required by reset_watermark and set_watermark; kept in history."
    )
    backfill_from: str | None = Field(
        None,
        description="With backfill_to: copy only the rows whose incremental value lies between "
        "the two (inclusive), without moving the watermark.",
    )
    backfill_to: str | None = Field(None, description="The backfill's upper bound (inclusive).")


def build_job_asset(job: CopyJob) -> dg.AssetsDefinition:
    """Every table of the job, each its own asset, materialized by the job's one step: the
    selected tables are copied by a bounded pool of threads (`parallel`), so a table costs its
    copy, not a process. The step can be subset to any tables (and to checks alone)."""
    specs = {
        table.destination_name: naming.copy_spec(job, table).replace_attributes(
            freshness_policy=checks.freshness_policy(job)
        )
        for table in job.tables
    }

    @dg.multi_asset(
        specs=list(specs.values()),
        check_specs=[spec for table in job.tables for spec in checks.check_specs(job, table)],
        can_subset=True,
        name=naming.job_op_name(job),
    )
    def copy(
        context: dg.AssetExecutionContext, config: CopyConfig
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        try:
            backfill = requested_backfill(config)
        except CopyJobError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        done = recorded_before(context.instance, context.run)
        works, copied = {}, []
        for table in job.tables:
            key = specs[table.destination_name].key
            copies = key in context.selected_asset_keys
            checked = any(c.asset_key == key for c in context.selected_asset_check_keys)
            if (copies or checked) and key not in done:
                work = _table_work(context, config, backfill, job, table, copies)
                works[table.destination_name] = work
                copied += [table] if copies and not job.is_cdc(table) else []
        try:
            # The tables' stores share connections (`stores.engines`), and the source tables
            # are described in one go (`stores.reflection`).
            with shared_engines():
                describe_sources(job, copied)
                yield from parallel.run_tables(
                    works,
                    threads=parallel_tables(job),
                    logs=parallel.Logs(context.log.info, context.log.warning, context.log.error),
                    slot=source_slot(context.instance, job, context.run.run_id),
                    retry=table_retry(job),
                )
        except parallel.TablesFailed as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={FAILED_TABLES: ", ".join(f.table for f in exc.failures)},
                allow_retries=False,
            ) from None

    return copy


def _table_work(
    context: dg.AssetExecutionContext,
    config: CopyConfig,
    backfill: Backfill | None,
    job: CopyJob,
    table: TableConfig,
    copies: bool,
) -> parallel.Work:
    """One table's work in the job's step: what its own step did when it had one."""
    key, source_key = naming.asset_key(job, table), naming.source_key(job, table)

    def work(
        logs: parallel.Logs, ending: threading.Event
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        report = ProgressLog(table.destination_name, logs.info)

        def progress(rows: int, estimate: int | None, elapsed: float) -> None:
            if ending.is_set():
                raise CopyJobError(f"{table.name}: the run ended; the copy is abandoned")
            report(rows, estimate, elapsed)

        # The lock spans reading the watermark, copying, counting, and recording the new
        # watermark (`parallel` lets the work go on once Dagster stored its event).
        operation = config.reset_watermark or config.set_watermark is not None
        new = (
            operations.requested_watermark(job, table, config.set_watermark, config.reason)
            if operation and copies
            else None
        )
        # A plain copy opens its source and destination once, for the lock, the copy and the
        # row counts of its check.
        plain = copies and not operation and not job.is_cdc(table)
        with (
            table_stores(job) if plain else nullcontext(None) as stores,
            table_lock(job, table, stores=stores),
        ):
            if not copies:
                latest = latest_metadata(context.instance, key)
                selected = {c.name for c in context.selected_asset_check_keys if c.asset_key == key}
                if checks.ROW_COUNT_PARITY in selected:
                    yield _of(key, checks.row_count_parity(job, table, latest))
                if checks.OPEN_TRANSACTIONS in selected:
                    yield _of(key, checks.open_transactions(latest))
                if cdc.SLOT_CHECK in selected:
                    yield _of(key, cdc.live_slot_check(job, table, latest))
                return
            if operation:
                yield operations.operation_event(
                    context.instance,
                    job,
                    table,
                    new,
                    config.reason or "",
                    f"run {context.run.run_id}",
                    context.run.tags,
                )
                return
            if job.is_cdc(table):
                yield from _cdc_work(context, job, table, config.full_refresh, progress)
                return
            previous = latest_watermark(context.instance, key)
            result = copy_table(
                job,
                table,
                previous,
                full_refresh=config.full_refresh,
                progress=progress,
                run_id=context.run.run_id,
                allow_mass_delete=config.allow_mass_delete,
                backfill=backfill,
                stores=stores,
            )
            if job.mode == "incremental":  # a full copy records no watermark to overtake
                current, latest = operations.record_of(context.instance, key)
                _refuse_if_overtaken(key, previous, current, config.full_refresh)
            else:
                latest = latest_metadata(context.instance, key)
            late_commit_warning(context.run.run_id, job, result, logs.warning)
            metadata = copy_metadata(result, source_key) | lifetime_metadata(
                context.instance, key, latest, result.rows_read, result.rows_written
            )
            if backfill is not None:
                metadata |= operations.backfill_metadata(
                    f"run {context.run.run_id}", config.reason, context.run.tags
                )
            parity = checks.row_count_parity(job, table, metadata, stores, result.destination_rows)
            if checks.DESTINATION_ROWS in parity.metadata:
                # The table's size, as the UI means it, not this run's increment.
                metadata[ROW_COUNT] = parity.metadata[checks.DESTINATION_ROWS]
            results = [_of(key, parity)]
            if watches_open_transactions(job):
                results.append(_of(key, checks.open_transactions(metadata)))
            yield dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=results)
            if not ending.is_set():
                _upkeep(job, table, stores, logs)

    return work


def _upkeep(job: CopyJob, table: TableConfig, stores: Any, logs: parallel.Logs) -> None:
    """The table's compaction and vacuum when due (`maintenance:`), once its copy and
    watermark are recorded, under its lock: a failure is a warning, the copy stands."""
    try:
        done = maintain_table(job, table, stores=stores)
    except CopyJobError as exc:
        logs.warning(f"{table.destination_name}: upkeep failed (the copy stands): {exc}")
        return
    if done is not None:
        logs.info(
            f"{table.destination_name}: upkeep after {done.commits} commits: "
            f"{done.files_compacted} small files compacted into {done.files_written}, "
            f"{done.files_deleted} unused files deleted; version {done.version}"
        )


def _cdc_work(
    context: dg.AssetExecutionContext,
    job: CopyJob,
    table: TableConfig,
    full_refresh: bool,
    progress: Any,
) -> Iterator[dg.MaterializeResult]:
    """A `mode: cdc` table: capture, record the position, then move the slot (`cdc`)."""
    key, source_key = naming.asset_key(job, table), naming.source_key(job, table)
    latest = latest_metadata(context.instance, key)

    def record(result: cdc.CdcResult) -> dg.MaterializeResult:
        metadata = (
            copy_metadata(result.copy, source_key)
            | cdc.cdc_metadata(result)
            | lifetime_metadata(
                context.instance, key, latest, result.copy.rows_read, result.copy.rows_written
            )
        )
        check = _of(key, cdc.slot_check(table, result.retained_bytes, cdc.reads_binlog(job)))
        return dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=[check])

    yield from cdc.run_cdc(job, table, latest, full_refresh, progress, record)


def _of(key: dg.AssetKey, result: dg.AssetCheckResult) -> dg.AssetCheckResult:
    """`result` as the check of `key`: the job's step holds the checks of all its tables."""
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=result.check_name,
        passed=result.passed,
        severity=result.severity,
        description=result.description,
        metadata=result.metadata,
    )


_UNSEEN_SOURCES: set[tuple[str, str]] = set()  # (run id, source URL) already warned about


def late_commit_warning(run_id: str, job: CopyJob, result: CopyResult, warn: parallel.Log) -> None:
    """Warn in the run's log when open transactions hold a watermark back too long (each
    table), or cannot be seen (once per run and source, in this process)."""
    late = result.late_commits
    if late is None or late.warning is None:
        return
    if late.transactions.unknown:
        seen = (run_id, result.source_url)
        if seen in _UNSEEN_SOURCES:
            return
        _UNSEEN_SOURCES.add(seen)
        warn(f"job {job.name!r}, source {result.source_url}: {late.warning}")
        return
    warn(f"{result.plan.source_table}: {late.warning}")


def recorded_before(instance: dg.DagsterInstance, run: dg.DagsterRun) -> set[dg.AssetKey]:
    """In a re-execution from failure, the tables its earlier runs (up to the last that was not
    one) recorded: only the others are copied again."""
    done: set[dg.AssetKey] = set()
    while run.is_resume_retry and run.parent_run_id:
        records = instance.get_records_for_run(
            run.parent_run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        done |= {r.event_log_entry.dagster_event.asset_key for r in records}
        parent = instance.get_run_by_id(run.parent_run_id)
        if parent is None:
            break
        run = parent
    return done


def requested_backfill(config: CopyConfig) -> Backfill | None:
    """The backfill the run config asks for, if any; refuse config that asks for two things."""
    asked = [
        name
        for name, given in (
            ("full_refresh", config.full_refresh),
            ("reset_watermark", config.reset_watermark),
            ("set_watermark", config.set_watermark is not None),
            ("backfill_from/backfill_to", config.backfill_from or config.backfill_to),
        )
        if given
    ]
    if len(asked) > 1:
        raise CopyJobError(f"run config: choose one of {', '.join(asked)}")
    if (config.backfill_from is None) != (config.backfill_to is None):
        raise CopyJobError("run config: a backfill needs both backfill_from and backfill_to")
    if config.backfill_from is None or config.backfill_to is None:
        return None
    return Backfill(config.backfill_from, config.backfill_to)


def table_retry(job: CopyJob) -> parallel.Retry | None:
    """The job's retries of a table; transient and unexpected errors only (`parallel`)."""
    if job.retries is None or job.retries.max_retries == 0:
        return None
    return parallel.Retry(job.retries.max_retries, job.retries.delay_seconds, job.retries.backoff)


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> Mapping[str, Any] | None:
    """The metadata of the asset's latest materialization, or None before the first."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return event.asset_materialization.metadata


def latest_watermark(instance: dg.DagsterInstance, key: dg.AssetKey) -> Watermark | None:
    """The watermark of record: the latest materialization's, or a later state operation's."""
    return operations.watermark_of_record(instance, key)


def _refuse_if_overtaken(
    key: dg.AssetKey, previous: Watermark | None, current: Watermark | None, full_refresh: bool
) -> None:
    """Compare-and-set: record nothing if another run recorded a watermark meanwhile (`current`,
    the watermark of record read again once the copy committed).

    Both runs wrote idempotent windows, so the data is right; recording this run's watermark
    could only move it backwards.
    """
    if current != previous and not full_refresh:
        raise WatermarkError(
            f"another run of {key.to_user_string()} recorded watermark "
            f"{current.text if current else None!r} while this one ran from "
            f"{previous.text if previous else None!r}; its rows are written, run it again"
        )


def build_source_specs(jobs: list[CopyJob]) -> list[dg.AssetSpec]:
    """The source tables of every job, once each."""
    specs: dict[dg.AssetKey, dg.AssetSpec] = {}
    for job in jobs:
        for table in job.tables:
            spec = naming.source_spec(job, table)
            specs.setdefault(spec.key, spec)
    return list(specs.values())


def build_copy_assets(jobs: list[CopyJob]) -> list[dg.AssetsDefinition]:
    return [build_job_asset(job) for job in jobs]
