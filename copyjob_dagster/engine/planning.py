"""What a copy will do, decided before any row moves, and whether the destination still fits it.

The plan maps the selected source columns to destination names and Arrow types, and names the
destination table, its key and the write method. Schema drift is judged against it: columns new
at the source are added; dropped columns and types that cannot convert stop the copy first.
"""

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from copyjob_dagster.config import AuditColumns, CopyJob, TableConfig
from copyjob_dagster.engine.splitting import SplitPlan, plan_split
from copyjob_dagster.engine.watermark import watermark_kind
from copyjob_dagster.errors import SchemaError
from copyjob_dagster.stores import (
    Destination,
    TableDescription,
    VersionColumns,
    WriteMethod,
    capabilities_of,
    string_length,
)


@dataclass(frozen=True)
class ColumnMapping:
    source: str
    destination: str


@dataclass(frozen=True)
class CopyPlan:
    """What one table's copy will do, decided before any row moves."""

    job: str
    source_table: str
    destination_table: str
    columns: tuple[ColumnMapping, ...]
    destination_schema: pa.Schema
    primary_key: tuple[str, ...]
    batch_rows: int
    incremental_column: str | None = None
    write: WriteMethod = "append"
    # What the copy adds to each row (see added_fields) and what it does with deleted rows.
    audit: AuditColumns | None = None
    versions: VersionColumns | None = None
    deletes: Literal["ignore", "hard", "soft"] = "ignore"
    deleted_column: str | None = None
    max_delete_share: float = 0.5
    added_fields: tuple[pa.Field, ...] = ()
    split: SplitPlan | None = None  # read as key ranges in parallel (see splitting.py)
    string_lengths: bool = True  # the destination holds text to its columns' declared lengths

    @property
    def written_schema(self) -> pa.Schema:
        """The destination table's columns: the copied ones, then those the copy adds."""
        return pa.schema([*self.destination_schema, *self.added_fields])

    @property
    def needs_arrow_path(self) -> bool:
        """Whether rows must pass through Arrow batches (a byte passthrough would skip the
        added columns, the versions and the deletion pass's key snapshot)."""
        return bool(self.added_fields) or self.write == "scd2" or self.deletes != "ignore"

    @property
    def destination_cursor(self) -> str | None:
        for column in self.columns:
            if column.source == self.incremental_column:
                return column.destination
        return None

    @property
    def appended_key(self) -> tuple[str, ...]:
        """The primary key of the table that `write: append` fills: the row's key and the
        incremental column, since each value a row takes there is kept as another version."""
        cursor = self.destination_cursor
        if not self.primary_key or cursor is None or cursor in self.primary_key:
            return self.primary_key
        return (*self.primary_key, cursor)

    @property
    def source_columns(self) -> list[str]:
        return [c.source for c in self.columns]


def plan_copy(job: CopyJob, table: TableConfig, source_table: TableDescription) -> CopyPlan:
    """Map the selected source columns to destination names and types; refuse unknown columns."""
    available = source_table.column_names
    selected = table.columns or available
    wanted = [*selected, *table.rename, *(table.primary_key or [])]
    if table.incremental_column:
        wanted.append(table.incremental_column)
    missing = sorted({c for c in wanted if c not in available})
    if missing:
        raise SchemaError(
            f"job {job.name!r}, table {table.name!r}: the source table has no column "
            f"{', '.join(repr(c) for c in missing)} (it has: {', '.join(available)})"
        )
    columns = tuple(ColumnMapping(name, table.rename.get(name, name)) for name in selected)
    names = [c.destination for c in columns]
    clashing = sorted({name for name in names if names.count(name) > 1})
    if clashing:
        raise SchemaError(
            f"job {job.name!r}, table {table.name!r}, field 'rename': several columns would be "
            f"named {', '.join(map(repr, clashing))} in the destination"
        )
    fields = [source_table.schema.field(c.source).with_name(c.destination) for c in columns]
    key_source = table.primary_key or [k for k in source_table.primary_key if k in selected]
    if table.primary_key is None and len(key_source) != len(source_table.primary_key):
        key_source = []  # a key that is only partly selected is no key
    if table.incremental_column and table.incremental_column not in selected:
        raise SchemaError(
            f"job {job.name!r}, table {table.name!r}: incremental_column "
            f"{table.incremental_column!r} must be one of the copied columns"
        )
    if job.mode == "incremental" and table.incremental_column:
        try:
            watermark_kind(source_table.schema.field(table.incremental_column))
        except SchemaError as exc:
            raise SchemaError(
                f"job {job.name!r}, table {table.name!r}, field 'incremental_column': {exc}"
            ) from None
    primary_key = tuple(table.rename.get(k, k) for k in key_source)
    capabilities = capabilities_of(job.destination)
    can_merge = capabilities.merge
    if table.write == "merge" and not can_merge:
        raise SchemaError(
            f"job {job.name!r}, table {table.name!r}: write: merge needs a destination that "
            f"merges by key (a database, or Delta: delta:///, delta+s3://); Parquet files are "
            f"appended (write: append)"
        )
    if table.write == "merge" and not primary_key:
        raise SchemaError(
            f"job {job.name!r}, table {table.name!r}: write: merge needs a primary_key, and the "
            f"source table has none; name one with primary_key: [...]"
        )
    write = table.write or ("merge" if primary_key and can_merge else "append")
    versions = VersionColumns(**table.history_columns.model_dump()) if write == "scd2" else None
    plan = CopyPlan(
        job=job.name,
        source_table=table.name,
        destination_table=table.destination_name,
        columns=columns,
        destination_schema=pa.schema(fields),
        primary_key=primary_key,
        batch_rows=job.batch_rows,
        incremental_column=table.incremental_column if job.mode == "incremental" else None,
        write=write,
        audit=job.audit_for(table),
        versions=versions,
        deletes=table.deletes,
        deleted_column=table.deleted_column if table.deletes == "soft" else None,
        max_delete_share=table.max_delete_share,
        split=plan_split(job, table, source_table),
        string_lengths=capabilities.string_lengths,
    )
    added = added_fields(plan)
    for field in added:
        if field.name in names:
            raise SchemaError(
                f"job {job.name!r}, table {table.name!r}: the added column {field.name!r} is "
                f"also a copied column; give it another name in the job file"
            )
    return dataclasses.replace(plan, added_fields=added)


def added_fields(plan: CopyPlan) -> tuple[pa.Field, ...]:
    """The columns the copy adds: SCD2 validity, the soft-deletion mark, the audit columns."""
    fields = []
    if plan.versions is not None:
        cursor = plan.destination_schema.field(plan.destination_cursor)
        fields += [
            cursor.with_name(plan.versions.valid_from).with_nullable(False),
            cursor.with_name(plan.versions.valid_to).with_nullable(True),
            pa.field(plan.versions.is_current, pa.bool_(), nullable=False),
        ]
    if plan.deleted_column and plan.versions is None:
        fields.append(pa.field(plan.deleted_column, pa.timestamp("us", "UTC")))
    audit = plan.audit
    if audit is not None:
        types = {
            audit.run_id: pa.string(),
            audit.loaded_at: pa.timestamp("us", "UTC"),
            audit.window_from: pa.string(),
            audit.window_to: pa.string(),
        }
        fields += [pa.field(name, kind) for name, kind in types.items() if name]
    return tuple(fields)


@dataclass(frozen=True)
class Retyped:
    """A column whose planned type differs from the destination's; `converts` if it fits."""

    name: str
    source_type: str
    destination_type: str
    converts: bool


@dataclass(frozen=True)
class SchemaDifference:
    """How the planned columns differ from an existing destination table's."""

    added: tuple[pa.Field, ...]
    dropped: tuple[str, ...]
    retyped: tuple[Retyped, ...]
    added_types: tuple[str, ...] = ()  # the added columns' types, in the destination's words

    def __bool__(self) -> bool:
        return bool(self.added or self.dropped or self.retyped)


def schema_difference(
    plan: CopyPlan, existing: TableDescription, destination: Destination
) -> SchemaDifference:
    """Columns new at the source, columns gone from it, and columns whose type changed: whose
    column, created today, would read back other than the existing one (types named in the
    destination's words)."""
    present = {field.name: field for field in existing.schema}
    planned = {field.name: field for field in plan.written_schema}
    added = tuple(field for name, field in planned.items() if name not in present)
    return SchemaDifference(
        added=added,
        added_types=tuple(destination.type_name(field) for field in added),
        dropped=tuple(name for name in present if name not in planned),
        retyped=tuple(
            Retyped(
                name,
                destination.type_name(field),
                destination.type_name(present[name]),
                converts,
            )
            for name, field in planned.items()
            if name in present
            and (
                not (converts := _converts(field, present[name], _length_bound(plan, name)))
                or (
                    _spelled(field) != _spelled(present[name])
                    and _spelled(destination.stored_field(field)) != _spelled(present[name])
                )
            )
        ),
    )


def reconcile_schema(plan: CopyPlan, existing: TableDescription, destination: Destination) -> None:
    """Add columns new at the source; refuse dropped columns and types that cannot convert."""
    difference = schema_difference(plan, existing, destination)
    refusal = schema_refusal(plan, difference)
    if refusal:
        raise SchemaError(refusal)
    if difference.added:
        destination.add_columns(
            plan.destination_table, [field.with_nullable(True) for field in difference.added]
        )


def schema_refusal(plan: CopyPlan, difference: SchemaDifference) -> str | None:
    """Why an incremental copy into the existing table must stop first, or None."""
    if plan.versions is not None and plan.versions.valid_from in {f.name for f in difference.added}:
        return (
            f"job {plan.job!r}, table {plan.source_table!r}: the destination table keeps no "
            f"versions (no column {plan.versions.valid_from!r}); run a full refresh to start "
            f"its history with write: scd2"
        )
    if difference.dropped:
        return (
            f"job {plan.job!r}, table {plan.source_table!r}: column(s) "
            f"{', '.join(map(repr, difference.dropped))} of the destination no longer come from "
            f"the source; restore them, select columns explicitly, or run a full refresh"
        )
    for column in difference.retyped:
        if not column.converts:
            return (
                f"job {plan.job!r}, table {plan.source_table!r}, column {column.name!r}: the "
                f"source type {column.source_type} cannot be written into the destination's "
                f"{column.destination_type} without loss (was the column widened at the "
                f"source?); run `copyjob run {plan.job} --table {plan.source_table} "
                f"--full-refresh` to copy the table again with the source's types"
            )
    return None


def _spelled(field: pa.Field) -> str:
    length = string_length(field)
    return f"{field.type}({length})" if length else str(field.type)


def _length_bound(plan: CopyPlan, column: str) -> bool:
    """Whether the column's declared length bounds what it holds, and is not a key's: MySQL
    destinations cap a text key at an indexable length, whatever the source's."""
    return plan.string_lengths and column not in plan.primary_key


def _converts(source: pa.Field, destination: pa.Field, length_bound: bool = True) -> bool:
    """Whether values of `source` fit a destination column of `destination` without loss: no
    rounding of a float or decimal, no string cut to a shorter declared length."""
    families = (
        pa.types.is_integer,
        pa.types.is_floating,
        pa.types.is_decimal,
        pa.types.is_timestamp,
        pa.types.is_date,
        pa.types.is_boolean,
        pa.types.is_binary,
    )
    s, d = source.type, destination.type
    if pa.types.is_string(d) or pa.types.is_large_string(d):
        longest, room = string_length(source), string_length(destination)
        return not (length_bound and pa.types.is_string(s) and longest and room and longest > room)
    for family in families:
        if family(s) or family(d):
            if not (family(s) and family(d)):
                return pa.types.is_integer(s) and pa.types.is_decimal(d)
            if family is pa.types.is_integer:
                return s.bit_width <= d.bit_width or pa.types.is_unsigned_integer(d)
            if family is pa.types.is_floating:
                return s.bit_width <= d.bit_width
            if family is pa.types.is_decimal:
                return s.scale <= d.scale and s.precision - s.scale <= d.precision - d.scale
            return True
    return s == d
