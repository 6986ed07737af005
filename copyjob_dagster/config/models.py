"""Copy jobs as pydantic models: a source, a destination, a mode, tables, automation.

A copy job is one YAML file, read by `loading.py` and validated once, here, at the edge;
everything below works on the models.
"""

import keyword
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from copyjob_dagster.config.added_columns import (
    AuditColumns,
    HistoryColumns,
    added_column_problem,
    audit_shorthand,
)
from copyjob_dagster.config.automation import (
    RetryConfig,
    ScheduleConfig,
    SensorConfig,
    valid_cron,
)
from copyjob_dagster.config.base import FieldProblem, StrictModel, Text, key_part
from copyjob_dagster.config.cdc import cdc_problem
from copyjob_dagster.config.endpoints import SourceConfig, StoreConfig
from copyjob_dagster.config.maintenance import MaintenanceConfig
from copyjob_dagster.errors import ConfigError

JOB_FILE_SUFFIXES = (".yaml", ".yml")
# Words joined by single underscores: op names join the job and the table with "__", and must
# not collide (job "a__b" with table "c", and job "a" with table "b__c").
JOB_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$"
# A job's name is also a Dagster job's, which may be neither a Python keyword nor one of the
# names Dagster keeps for itself (`dagster._core.definitions.utils.DISALLOWED_NAMES`).
RESERVED_JOB_NAMES = frozenset(keyword.kwlist) | {
    "arg_dict", "bool", "conf", "config", "context", "dict", "float", "input", "input_arg_dict",
    "int", "meta", "output", "output_arg_dict", "str", "type",
}  # fmt: skip


class SplitConfig(StrictModel):
    """Read a large table as key ranges in parallel (see `splitting.py`); it still commits once."""

    parts: int | Literal["auto"] = Field(
        description="ranges read at once, or auto: one per 500,000 rows of the table, "
        "at most the CPU count and source.max_connections"
    )
    column: Text | None = Field(
        None,
        description="an integer, date or timestamp column; default: the incremental column, "
        "else the one-column primary key",
    )

    @field_validator("parts", mode="before")
    @classmethod
    def _parts(cls, value: Any) -> Any:
        """One message for both forms (pydantic would report each member of the union)."""
        if value == "auto" or (type(value) is int and value >= 2):
            return value
        raise ValueError(f"should be a number of parts, 2 or more, or auto (got {value!r})")


class TableConfig(StrictModel):
    """One table to copy, with its column selection and mapping."""

    name: Text = Field(description="source table")
    columns: list[Text] | None = Field(None, min_length=1, description="default: all columns")
    to: Text | None = Field(None, description="destination table (default: same name)")
    rename: dict[Text, Text] = Field(default_factory=dict, description="source -> destination")
    incremental_column: Text | None = None
    primary_key: list[Text] | None = Field(None, min_length=1)
    write: Literal["append", "merge", "scd2"] | None = Field(
        None,
        description="incremental writes; default merge when there is a key, else append; "
        "scd2 keeps every version of a row",
    )
    history_columns: HistoryColumns = Field(
        default_factory=HistoryColumns, description="names of the write: scd2 validity columns"
    )
    deletes: Literal["ignore", "hard", "soft"] = Field(
        "ignore",
        description="rows gone from the source: leave them (ignore), delete them (hard), or "
        "set deleted_column on them (soft); needs primary_key",
    )
    deleted_column: Text = Field(
        "_copyjob_deleted_at", description="deletes: soft: the deletion timestamp column"
    )
    max_delete_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="a run that would delete more than this share of the destination's rows "
        "refuses, unless told to (copyjob run --allow-mass-delete)",
    )
    audit_columns: AuditColumns | Literal[False] | None = Field(
        None, description="true, a mapping of names, or false; default: the job's"
    )
    lookback: float = Field(
        0,
        ge=0,
        description="re-read this far below the watermark each run (seconds for timestamps, "
        "days for dates, units for numbers), for rows that commit late",
    )
    open_transaction_warning: float = Field(
        900,
        gt=0,
        description="warn when a transaction open at the source holds a timestamp watermark "
        "back by more than this many seconds (see late commits in docs/incremental.md)",
    )
    null_cursor: Literal["fail", "skip"] = Field(
        "fail", description="rows whose incremental column is NULL: stop the run, or skip them"
    )
    split: SplitConfig | None = Field(
        None, description="read the table as key ranges in parallel, e.g. {parts: 4}"
    )
    mode: Literal["cdc"] | None = Field(
        None, description="cdc: this table follows the source's change log (default: the job's)"
    )
    max_retained_wal_mb: float = Field(
        1024,
        gt=0,
        description="mode: cdc: warn when the slot holds back more WAL than this (MariaDB: "
        "when the recorded position is more binlog than this behind)",
    )
    maintenance: MaintenanceConfig | None = Field(
        None,
        description="a Delta destination: compact and vacuum after every N commits, e.g. "
        "{every: 20}; default: the job's",
    )

    @property
    def destination_name(self) -> str:
        return self.to or self.name

    @property
    def referenced_columns(self) -> dict[str, list[str]]:
        """The source columns that each field names, by field."""
        return {
            "columns": list(self.columns or []),
            "rename": list(self.rename),
            "incremental_column": [self.incremental_column] if self.incremental_column else [],
            "primary_key": list(self.primary_key or []),
        }

    @field_validator("audit_columns", mode="before")
    @classmethod
    def _audit_shorthand(cls, value: Any) -> Any:
        return audit_shorthand(value)

    def added_columns(self, audit: AuditColumns | None) -> dict[str, list[str]]:
        """The destination columns the copy adds, by the field that names them."""
        added = {"audit_columns": audit.names if audit else []}
        if self.write == "scd2":
            added["history_columns"] = self.history_columns.names
        if self.deletes == "soft" and self.write != "scd2":
            added["deleted_column"] = [self.deleted_column]
        return added

    @model_validator(mode="after")
    def _check_mapping(self) -> "TableConfig":
        if self.columns is not None:
            _refuse_repeats("columns", self.columns, "columns listed twice")
            for field, named in self.referenced_columns.items():
                missing = [c for c in named if c not in self.columns]
                if missing:
                    raise FieldProblem(
                        (field,),
                        f"names columns that are not selected in `columns`: {', '.join(missing)}",
                    )
        destination_columns = (
            [self.rename.get(c, c) for c in self.columns]
            if self.columns
            else [*self.rename.values()]
        )
        _refuse_repeats("rename", destination_columns, "several columns would be named")
        return self


def _refuse_repeats(field: str, names: list[str], problem: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise FieldProblem((field,), f"{problem}: {', '.join(repeated)}")


class CopyJob(StrictModel):
    """A copy job: a source, a destination, a copy mode, and the tables to copy."""

    name: str = Field(pattern=JOB_NAME_PATTERN, description="the job; becomes the asset group")
    source: SourceConfig
    destination: StoreConfig
    mode: Literal["full", "incremental", "cdc"] = Field(
        "full", description="full | incremental | cdc (change data capture, see docs/cdc.md)"
    )
    schedule: ScheduleConfig | None = Field(
        None, description="a cron expression, or a mapping of cron, timezone and status"
    )
    sensor: SensorConfig | None = Field(
        None, description="true, or a mapping of minimum_interval_seconds and status"
    )
    retries: RetryConfig | None = Field(None, description="default: no retries")
    batch_rows: int = Field(50_000, gt=0, strict=True, description="rows per Arrow batch")
    audit_columns: AuditColumns | None = Field(
        None, description="true, or a mapping of names: columns added to every copied row"
    )
    max_parallel_tables: int | None = Field(
        None, ge=1, strict=True, description="tables of a run copied at once (default: 4)"
    )
    maintenance: MaintenanceConfig | None = Field(
        None, description="a Delta destination: every table's upkeep, e.g. {every: 20}"
    )
    tables: list[TableConfig] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_JOB_NAMES:
            raise ValueError(f"{name!r} is reserved by Python or Dagster: choose another job name")
        return name

    @field_validator("audit_columns", mode="before")
    @classmethod
    def _audit_shorthand(cls, value: Any) -> Any:
        return None if value is False else audit_shorthand(value)

    def audit_for(self, table: TableConfig) -> AuditColumns | None:
        """The table's audit columns: its own setting, else the job's."""
        if table.audit_columns is False:
            return None
        return table.audit_columns or self.audit_columns

    def maintenance_for(self, table: TableConfig) -> MaintenanceConfig | None:
        """The table's upkeep: its own setting, else the job's."""
        return table.maintenance or self.maintenance

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_shorthand(cls, schedule: Any) -> Any:
        """`schedule: "cron"` is short for `schedule: {cron: "cron"}`."""
        return {"cron": valid_cron(schedule)} if isinstance(schedule, str) else schedule

    @field_validator("sensor", mode="before")
    @classmethod
    def _sensor_shorthand(cls, sensor: Any) -> Any:
        """`sensor: true` is a sensor with the default settings; `sensor: false` is none."""
        if isinstance(sensor, bool):
            return {} if sensor else None
        return sensor

    @model_validator(mode="after")
    def _check_job(self) -> "CopyJob":
        self._check_destinations()
        self._check_sensor()
        for index, table in enumerate(self.tables):
            self._check_mode(index, table)
            self._check_added_columns(index, table)
            self._check_split(index, table)
        return self

    def _check_destinations(self) -> None:
        """Each table needs a destination table, and an asset key, of its own."""
        same_store = self.source.identity == self.destination.identity
        seen: dict[str, TableConfig] = {}
        for index, table in enumerate(self.tables):
            where = ("tables", index, "to")
            if same_store and table.destination_name == table.name:
                raise FieldProblem(
                    where,
                    "the destination is the source store, so the copy would replace the source "
                    "table itself; set `to:` to another table",
                )
            key = key_part(table.destination_name)
            other = seen.setdefault(key, table)
            if other is table:
                continue
            if other.destination_name == table.destination_name:
                clash = f"table {other.name!r} is also copied to {table.destination_name!r}"
            else:
                clash = (
                    f"{table.destination_name!r} and {other.destination_name!r} (table "
                    f"{other.name!r}) make the same asset key {key!r}"
                )
            raise FieldProblem(where, f"{clash}; give one of them another `to:`")

    def _check_sensor(self) -> None:
        if self.sensor is not None and self.mode == "full":
            raise FieldProblem(
                ("sensor",),
                "the new-data sensor compares each table's source with its watermark (or its "
                "replication slot), so it needs mode: incremental or cdc (a full copy can run "
                "on a schedule instead)",
            )

    def is_cdc(self, table: TableConfig) -> bool:
        """Whether `table` follows the source's change log (`mode: cdc`, the job's or its own)."""
        return self.mode == "cdc" or table.mode == "cdc"

    def _check_mode(self, index: int, table: TableConfig) -> None:
        if self.is_cdc(table):
            problem = cdc_problem(table, self.audit_for(table))
            if problem:
                raise FieldProblem(("tables", index, problem[0]), problem[1])
            return
        # A Delta source table can be copied by its change data feed instead (checked when read).
        feed = self.source.technology == "delta"
        if self.mode == "incremental" and not table.incremental_column and not feed:
            raise FieldProblem(
                ("tables", index, "incremental_column"),
                "mode: incremental needs an incremental_column on every table",
            )
        if self.mode == "incremental" and not table.incremental_column and not table.primary_key:
            raise FieldProblem(
                ("tables", index, "primary_key"),
                "an incremental copy by the Delta change data feed (no incremental_column) "
                "merges changed rows by their key: name it with primary_key: [...]",
            )
        by_feed = self.mode == "incremental" and not table.incremental_column
        if by_feed and table.write in ("append", "scd2"):
            raise FieldProblem(
                ("tables", index, "write"),
                f"write: {table.write} needs an incremental_column; a copy by the change data "
                f"feed merges (write: merge)",
            )
        if self.mode == "full" and table.write:
            raise FieldProblem(
                ("tables", index, "write"),
                "write applies to incremental copies; a full copy replaces the table "
                "(remove `write:` or set `mode: incremental`)",
            )

    def _check_added_columns(self, index: int, table: TableConfig) -> None:
        problem = added_column_problem(table, self.audit_for(table), self.mode)
        if problem:
            field, message = problem
            raise FieldProblem(("tables", index, field), message)

    def _check_split(self, index: int, table: TableConfig) -> None:
        """Whether the source can share a snapshot between connections is the store's to say
        (`stores.store_problems`)."""
        if table.split is None:
            return
        limit = self.source.max_connections
        if limit is not None and isinstance(table.split.parts, int) and table.split.parts > limit:
            raise FieldProblem(
                ("tables", index, "split", "parts"),
                f"{table.split.parts} parts open {table.split.parts} source connections, more "
                f"than source.max_connections ({limit})",
            )

    def table(self, destination_name: str) -> TableConfig:
        for table in self.tables:
            if table.destination_name == destination_name:
                return table
        raise ConfigError(f"job {self.name!r} has no table {destination_name!r}")
