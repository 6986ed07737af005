"""Names: a job and a table to asset keys, source keys, groups and asset specs.

An asset's key is `[job, destination table]`; a source table's key is `["source", source name,
table]`, so two jobs reading the same database share its source nodes in the lineage graph.
"""

import dagster as dg

from copyjob_dagster.config import CopyJob, TableConfig, key_part, unique_key_part

SOURCE_PREFIX = "source"
SOURCE_GROUP = "sources"
UNSET_VARIABLES = "copyjob/unset_variables"


def asset_key(job: CopyJob, table: TableConfig) -> dg.AssetKey:
    return dg.AssetKey([key_part(job.name), key_part(table.destination_name)])


def source_key(job: CopyJob, table: TableConfig) -> dg.AssetKey:
    return dg.AssetKey([SOURCE_PREFIX, job.source.display_name, unique_key_part(table.name)])


def op_name(job: CopyJob, table: TableConfig) -> str:
    return "__".join(asset_key(job, table).path)


def job_op_name(job: CopyJob) -> str:
    """The op (and step) that copies the job's tables."""
    return f"copy__{key_part(job.name)}"


def copy_spec(job: CopyJob, table: TableConfig) -> dg.AssetSpec:
    """The spec of the asset that holds `table`'s copy, downstream of its source table.

    Names and URLs are code spans in the Markdown description: a masked password's `***` and
    a name's underscores would otherwise turn into emphasis."""
    renamed = ", renaming " + ", ".join(f"`{a}` → `{b}`" for a, b in table.rename.items())
    columns = ", ".join(f"`{c}`" for c in table.columns) if table.columns else "all columns"
    mode = "cdc" if job.is_cdc(table) else job.mode
    kind = "Change data capture" if mode == "cdc" else f"{mode.capitalize()} copy"
    return dg.AssetSpec(
        key=asset_key(job, table),
        deps=[source_key(job, table)],
        group_name=job.name,
        kinds={job.source.technology, job.destination.technology},
        description=(
            f"{kind} of table `{table.name}` ({columns}"
            f"{renamed if table.rename else ''}) from `{job.source.masked_url}` "
            f"into `{table.destination_name}` at `{job.destination.masked_url}`." + _unset_note(job)
        ),
        metadata={
            "copyjob/mode": mode,
            "copyjob/source": job.source.masked_url,
            "copyjob/destination": job.destination.masked_url,
            **({UNSET_VARIABLES: ", ".join(_unset(job))} if _unset(job) else {}),
        },
    )


def _unset(job: CopyJob) -> list[str]:
    return [*job.source.unset_variables, *job.destination.unset_variables]


def _unset_note(job: CopyJob) -> str:
    """A warning for a job whose password variables were not set where its definitions
    loaded: the runs launched from there (the UI, schedules, sensors) fail until they are."""
    if not _unset(job):
        return ""
    variables = ", ".join(f"`{name}`" for name in _unset(job))
    return (
        f"\n\n**Runs launched from here fail until {variables} is set**: the password "
        f"variable is not set in this code location's environment."
    )


def source_spec(job: CopyJob, table: TableConfig) -> dg.AssetSpec:
    """The external asset for a source table; identical for every job that reads it."""
    return dg.AssetSpec(
        key=source_key(job, table),
        group_name=SOURCE_GROUP,
        kinds={job.source.technology},
        description=f"Table `{table.name}` of the source database `{job.source.display_name}`.",
    )
