"""Where a change stream's source columns go at the destination, for both change sources
(PostgreSQL's `cdc_apply.RunApplier`, MariaDB's `binlog_cdc`).

A change names its columns as the source had them when it was made. A column the plan knows
goes where the plan says (selection, renames). A column it does not know was added at the
source since the plan's description: unless the job selects its columns, it is copied, added to
the destination first with its type at the source (described again).

A column added and then dropped again before the run read its changes can no longer be
described: it is added as text, with the values the changes carry. So the destination ends as
it would have had a run come between the two `ALTER TABLE`s (a column dropped at the source is
kept at the destination, as every dropped column is), save the column's type. Raising instead
(what the binlog path once did) failed every later run until a full snapshot, for a column the
source no longer has, and made the outcome depend on when the runs happened.
"""

from typing import Any

import pyarrow as pa

from copyjob_dagster.config import TableConfig
from copyjob_dagster.engine.planning import CopyPlan
from copyjob_dagster.stores import Source

Column = tuple[str, pa.Field] | None  # destination name and source field; None: not copied


class ChangeColumns:
    """A run's mapping of source columns to destination columns, adding new ones to the sink."""

    def __init__(
        self, plan: CopyPlan, table: TableConfig, source: Source, described: pa.Schema
    ) -> None:
        self.plan, self.table, self.source = plan, table, source
        self.described = described  # the source table's columns, described again for a new one
        self.mapping = {c.source: c.destination for c in plan.columns}
        self.sink: Any = None
        self.have: set[str] = set()

    def start(self, sink: Any, have: set[str]) -> None:
        """Add new columns to `sink`, whose table has the columns `have` (or is about to)."""
        self.sink, self.have = sink, have

    def column(self, name: str) -> Column:
        """Where source column `name` goes, and its type at the source; None: not copied."""
        if name not in self.mapping:
            if self.table.columns is not None:
                return None  # not selected
            self.mapping[name] = self.table.rename.get(name, name)
        destination = self.mapping[name]
        field = self.source_field(name)
        if destination not in self.have:
            self.sink.add_column(field.with_name(destination))
            self.have.add(destination)
        return destination, field

    def source_field(self, name: str) -> pa.Field:
        """The column's type at the source: described once, and again for a new column; text
        for one that is gone again (see the module's docstring)."""
        if name not in self.described.names:
            self.source.forget(self.plan.source_table)  # type: ignore[attr-defined]
            self.described = self.source.describe(self.plan.source_table).schema
        if name in self.described.names:
            return self.described.field(name)
        return pa.field(name, pa.string())
