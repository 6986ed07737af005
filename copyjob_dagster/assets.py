"""One Dagster asset per configured table: to materialize it is to copy the table.

Specs come first (`naming`), then each becomes a one-asset step whose body calls the engine and
records the `CopyResult`. A user's mistake (bad config, missing column, unreachable store) fails
the step with the error's message and is not retried.
"""

from collections.abc import Iterator

import dagster as dg

from copyjob_dagster import naming
from copyjob_dagster.config import CopyJob, TableConfig
from copyjob_dagster.engine import copy_table
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.metadata import copy_metadata


def build_copy_asset(job: CopyJob, table: TableConfig) -> dg.AssetsDefinition:
    spec = naming.copy_spec(job, table)
    source_key = naming.source_key(job, table)

    @dg.multi_asset(specs=[spec], name=naming.op_name(job, table))
    def copy(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        try:
            result = copy_table(job, table)
        except CopyJobError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        context.log.info(
            f"{table.name} → {result.destination_location}: read {result.rows_read:,} rows, "
            f"wrote {result.rows_written:,} in {result.seconds:.2f} s"
        )
        yield dg.MaterializeResult(asset_key=spec.key, metadata=copy_metadata(result, source_key))

    return copy


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
