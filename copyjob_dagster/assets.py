"""One Dagster asset per configured table: to materialize it is to copy the table.

Specs come first (`naming`), then each becomes a one-asset step whose body calls the engine and
records the `CopyResult`. A user's mistake (bad config, missing column, unreachable store) fails
the step with the error's message and is not retried.
"""

from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from copyjob_dagster import naming
from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.engine import copy_table, table_lock
from copyjob_dagster.errors import CopyJobError, WatermarkError
from copyjob_dagster.metadata import copy_metadata, watermark_from_metadata
from copyjob_dagster.watermark import Watermark


class CopyConfig(dg.Config):
    """Run config, shown in the launchpad."""

    full_refresh: bool = Field(
        False, description="Incremental tables: forget the watermark and copy the table anew."
    )


def build_copy_asset(job: CopyJob, table: TableConfig) -> dg.AssetsDefinition:
    spec = naming.copy_spec(job, table)
    source_key = naming.source_key(job, table)

    @dg.multi_asset(specs=[spec], name=naming.op_name(job, table))
    def copy(
        context: dg.AssetExecutionContext, config: CopyConfig
    ) -> Iterator[dg.MaterializeResult]:
        # The lock spans reading the watermark, copying, and recording the new watermark
        # (Dagster stores the materialization before this generator resumes).
        try:
            with table_lock(job, table):
                previous = latest_watermark(context.instance, spec.key)
                result = copy_table(job, table, previous, full_refresh=config.full_refresh)
                _refuse_if_overtaken(context.instance, spec.key, previous, config.full_refresh)
                context.log.info(
                    f"{table.name} → {result.destination_location}: read {result.rows_read:,} "
                    f"rows, wrote {result.rows_written:,} in {result.seconds:.2f} s"
                )
                yield dg.MaterializeResult(
                    asset_key=spec.key, metadata=copy_metadata(result, source_key)
                )
        except CopyJobError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None

    return copy


def latest_watermark(instance: dg.DagsterInstance, key: dg.AssetKey) -> Watermark | None:
    """The watermark of record: the one the asset's latest materialization holds."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return watermark_from_metadata(event.asset_materialization.metadata)


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
