"""Names: a job and a table to asset keys, source keys, groups and asset specs.

An asset's key is `[job, destination table]`; a source table's key is `["source", source name,
table]`, so two jobs reading the same database share its source nodes in the lineage graph.
"""

import dagster as dg

from copyjob_dagster.config import CopyJob, TableConfig, key_part, unique_key_part

SOURCE_PREFIX = "source"
SOURCE_GROUP = "sources"


def asset_key(job: CopyJob, table: TableConfig) -> dg.AssetKey:
    return dg.AssetKey([key_part(job.name), key_part(table.destination_name)])


def source_key(job: CopyJob, table: TableConfig) -> dg.AssetKey:
    return dg.AssetKey([SOURCE_PREFIX, job.source.display_name, unique_key_part(table.name)])


def op_name(job: CopyJob, table: TableConfig) -> str:
    return "__".join(asset_key(job, table).path)


def copy_spec(job: CopyJob, table: TableConfig) -> dg.AssetSpec:
    """The spec of the asset that holds `table`'s copy, downstream of its source table."""
    renamed = f", renaming {', '.join(f'{a} → {b}' for a, b in table.rename.items())}"
    columns = ", ".join(table.columns) if table.columns else "all columns"
    return dg.AssetSpec(
        key=asset_key(job, table),
        deps=[source_key(job, table)],
        group_name=job.name,
        kinds={job.source.technology, job.destination.technology},
        description=(
            f"{job.mode.capitalize()} copy of table `{table.name}` ({columns}"
            f"{renamed if table.rename else ''}) from {job.source.masked_url} "
            f"into `{table.destination_name}` at {job.destination.masked_url}."
        ),
        metadata={
            "copyjob/mode": job.mode,
            "copyjob/source": job.source.masked_url,
            "copyjob/destination": job.destination.masked_url,
        },
    )


def source_spec(job: CopyJob, table: TableConfig) -> dg.AssetSpec:
    """The external asset for a source table; identical for every job that reads it."""
    return dg.AssetSpec(
        key=source_key(job, table),
        group_name=SOURCE_GROUP,
        kinds={job.source.technology},
        description=f"Table `{table.name}` of the source database `{job.source.display_name}`.",
    )
