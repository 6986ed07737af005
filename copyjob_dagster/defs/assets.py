"""One Dagster asset per configured table: to materialize it is to copy the table.

Specs come first (`naming`), then each becomes a one-asset step whose body calls the engine and
records the `CopyResult`, with the row-count check of the copy it made (`checks`). A transient
error (a lost connection, a deadlock) fails the step for the job's retry policy to retry; a
user's mistake (bad config, missing column, wrong password) fails it with the error's message,
and is not retried.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from copyjob_dagster.config import CopyJob, TableConfig, source_pool
from copyjob_dagster.defs import checks, naming, operations
from copyjob_dagster.defs.concurrency import JOB_TAG
from copyjob_dagster.defs.metadata import ROW_COUNT, copy_metadata
from copyjob_dagster.defs.monitoring import lifetime_metadata
from copyjob_dagster.engine import (
    Backfill,
    CopyResult,
    ProgressLog,
    Watermark,
    copy_table,
    table_lock,
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


_BACKOFF = {
    "exponential": dg.Backoff.EXPONENTIAL,
    "linear": dg.Backoff.LINEAR,
    "constant": None,
}


def build_copy_asset(job: CopyJob, table: TableConfig) -> dg.AssetsDefinition:
    spec = naming.copy_spec(job, table).replace_attributes(
        freshness_policy=checks.freshness_policy(job)
    )
    source_key = naming.source_key(job, table)

    # can_subset: the row-count check can also run alone, without copying.
    @dg.multi_asset(
        specs=[spec],
        check_specs=checks.check_specs(job, table),
        can_subset=True,
        name=naming.op_name(job, table),
        retry_policy=retry_policy(job),
        pool=source_pool(job.source),
        op_tags={JOB_TAG: job.name},  # the Definitions' executor limits each job by it
    )
    def copy(
        context: dg.AssetExecutionContext, config: CopyConfig
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        # The lock spans reading the watermark, copying, counting, and recording the new
        # watermark (Dagster stores the materialization, or a reset or set's observation,
        # before this generator resumes).
        try:
            backfill = requested_backfill(config)
            operation = config.reset_watermark or config.set_watermark is not None
            new = (
                operations.requested_watermark(job, table, config.set_watermark, config.reason)
                if operation
                else None
            )
            with table_lock(job, table):
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
                if spec.key not in context.selected_asset_keys:
                    latest = latest_metadata(context.instance, spec.key)
                    selected = {key.name for key in context.selected_asset_check_keys}
                    if checks.ROW_COUNT_PARITY in selected:
                        yield checks.row_count_parity(job, table, latest)
                    if checks.OPEN_TRANSACTIONS in selected:
                        yield checks.open_transactions(latest)
                    return
                previous = latest_watermark(context.instance, spec.key)
                result = copy_table(
                    job,
                    table,
                    previous,
                    full_refresh=config.full_refresh,
                    progress=ProgressLog(table.name, context.log.info),
                    run_id=context.run.run_id,
                    allow_mass_delete=config.allow_mass_delete,
                    backfill=backfill,
                )
                _refuse_if_overtaken(context.instance, spec.key, previous, config.full_refresh)
                context.log.info(
                    f"{table.name} → {result.destination_location}: read {result.rows_read:,} "
                    f"rows, wrote {result.rows_written:,} in {result.seconds:.2f} s"
                )
                late_commit_warning(context, job, result)
                metadata = copy_metadata(result, source_key) | lifetime_metadata(
                    context.instance,
                    spec.key,
                    latest_metadata(context.instance, spec.key),
                    result.rows_read,
                    result.rows_written,
                )
                if backfill is not None:
                    metadata |= operations.backfill_metadata(
                        f"run {context.run.run_id}", config.reason, context.run.tags
                    )
                parity = checks.row_count_parity(job, table, metadata)
                if checks.DESTINATION_ROWS in parity.metadata:
                    # The table's size, as the UI means it, not this run's increment.
                    metadata[ROW_COUNT] = parity.metadata[checks.DESTINATION_ROWS]
                results = [parity]
                if watches_open_transactions(job):
                    results.append(checks.open_transactions(metadata))
                yield dg.MaterializeResult(
                    asset_key=spec.key, metadata=metadata, check_results=results
                )
        except CopyJobError as exc:
            raise dg.Failure(description=str(exc), allow_retries=exc.transient) from None

    return copy


_UNSEEN_SOURCES: set[tuple[str, str]] = set()  # (run id, source URL) already warned about


def late_commit_warning(
    context: dg.AssetExecutionContext, job: CopyJob, result: CopyResult
) -> None:
    """Warn in the run's log when open transactions hold a watermark back too long (each
    table), or cannot be seen (once per run and source, in this process)."""
    late = result.late_commits
    if late is None or late.warning is None:
        return
    if late.transactions.unknown:
        seen = (context.run.run_id, result.source_url)
        if seen in _UNSEEN_SOURCES:
            return
        _UNSEEN_SOURCES.add(seen)
        context.log.warning(f"job {job.name!r}, source {result.source_url}: {late.warning}")
        return
    context.log.warning(f"{result.plan.source_table}: {late.warning}")


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


def retry_policy(job: CopyJob) -> dg.RetryPolicy | None:
    """The job's retry policy; it applies to transient errors only (see the asset's body)."""
    if job.retries is None or job.retries.max_retries == 0:
        return None
    return dg.RetryPolicy(
        max_retries=job.retries.max_retries,
        delay=job.retries.delay_seconds,
        backoff=_BACKOFF[job.retries.backoff],
    )


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
    instance: dg.DagsterInstance, key: dg.AssetKey, previous: Watermark | None, full_refresh: bool
) -> None:
    """Compare-and-set: record nothing if another run recorded a watermark meanwhile.

    Both runs wrote idempotent windows, so the data is right; recording this run's watermark
    could only move it backwards.
    """
    current = latest_watermark(instance, key)
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
    return [build_copy_asset(job, table) for job in jobs for table in job.tables]
