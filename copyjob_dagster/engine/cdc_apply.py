"""PostgreSQL's decoded changes handed to a destination's sink, a run of columns at a time.

The decoder (`stores.pgoutput_batch`) gives runs of changes as text columns, in the column
order of the Relation message before them; here each column is mapped to its destination
column (selection, renames; a column new at the source is added to the destination first),
typed from its text, and the run goes to the sink as one `ChangeBatch`. Everything lands in the
sink's one destination transaction, so a stream that ends inside a transaction (`finish`) fails
the run and nothing is applied.
"""

from typing import Any

import numpy as np
import pyarrow as pa

from copyjob_dagster.config import TableConfig
from copyjob_dagster.engine.planning import CopyPlan
from copyjob_dagster.errors import SourceError
from copyjob_dagster.stores import Source
from copyjob_dagster.stores.change_fold import ChangeBatch
from copyjob_dagster.stores.pg_changes import typed
from copyjob_dagster.stores.pgoutput import Relation, lsn_text
from copyjob_dagster.stores.pgoutput_batch import (
    OPERATIONS,
    BatchDecoder,
    ChangeRun,
    Decoded,
    TextColumn,
    TruncateAt,
)

Column = tuple[str, pa.Field] | None  # destination name and source field; None: not copied


class RunApplier:
    """Turns decoded runs into the sink's change batches."""

    def __init__(
        self, plan: CopyPlan, table: TableConfig, source: Source, described: pa.Schema
    ) -> None:
        self.plan, self.table, self.source = plan, table, source
        self.described = described  # the source table's columns, described again for a new one
        self.sink: Any = None
        self.have: set[str] = set()
        self.mapping = {c.source: c.destination for c in plan.columns}
        self.relations: dict[int, list[Column]] = {}
        self.decoder = BatchDecoder()
        self.changes = 0

    def start(self, sink: Any, have: set[str]) -> None:
        """Apply to `sink`, whose table has the columns `have` (or is about to)."""
        self.sink, self.have = sink, have

    def take(self, messages: list[bytes]) -> None:
        for item in self.decoder.decode(messages):
            self._take(item)

    def _take(self, item: Decoded) -> None:
        if isinstance(item, Relation):
            self.relations[item.oid] = [self._column(name) for name in item.columns]
        elif isinstance(item, TruncateAt):
            self.sink.truncate(item.position)
        elif isinstance(item, ChangeRun) and item.relation in self.relations:
            self.sink.changes(self._batch(item, self.relations[item.relation]))
            self.changes += len(item.operations)

    @property
    def transactions(self) -> int:
        return self.decoder.transactions

    @property
    def last_end(self) -> int:
        return self.decoder.last_end

    def finish(self) -> None:
        if self.decoder.open:
            raise SourceError(
                f"table {self.plan.source_table!r}: the change stream ended inside the "
                f"transaction that commits at {lsn_text(self.decoder.position)}; nothing was "
                f"applied"
            )

    def _column(self, name: str) -> Column:
        """Where a source column goes, and its type at the source; None: not copied."""
        if name not in self.mapping:
            if self.table.columns is not None:
                return None  # not selected
            self.mapping[name] = self.table.rename.get(name, name)
        destination = self.mapping[name]
        field = self._source_field(name)
        if destination not in self.have:
            self.sink.add_column(field.with_name(destination))
            self.have.add(destination)
        return destination, field

    def _source_field(self, name: str) -> pa.Field:
        """The column's type at the source: described once, and again for a new column."""
        if name not in self.described.names:
            self.source.forget(self.plan.source_table)  # type: ignore[attr-defined]
            self.described = self.source.describe(self.plan.source_table).schema
        if name in self.described.names:
            return self.described.field(name)
        return pa.field(name, pa.string())  # dropped again since: its values stay text

    def _batch(self, run: ChangeRun, columns: list[Column]) -> ChangeBatch:
        if len(columns) != len(run.new):
            raise SourceError(
                f"table {self.plan.source_table!r}: a change has {len(run.new)} columns where "
                f"its relation has {len(columns)}"
            )
        names, arrays, unsent = _typed(columns, run.new)
        unsent = {n: m for n, m in unsent.items() if m is not None}
        old_keys = None
        if run.old is not None:
            old_names, old_arrays, _ = _typed(columns, run.old)
            found = dict(zip(old_names, old_arrays, strict=True))
            if all(k in found for k in self.plan.primary_key):
                old_keys = pa.table({k: found[k] for k in self.plan.primary_key})
        return ChangeBatch(
            pa.table(dict(zip(names, arrays, strict=True))),
            _operation_names(run.operations),
            pa.array(run.positions, pa.int64()),
            unsent,
            old_keys,
        )


def _typed(
    columns: list[Column], texts: list[TextColumn]
) -> tuple[list[str], list[pa.Array], dict[str, np.ndarray | None]]:
    names, arrays, unsent = [], [], {}
    for column, text in zip(columns, texts, strict=True):
        if column is None:
            continue
        name, field = column
        names.append(name)
        arrays.append(typed(field, text.values))
        unsent[name] = text.unchanged
    return names, arrays, unsent


def _operation_names(codes: np.ndarray) -> pa.Array:
    names = np.empty(len(codes), dtype=object)
    for code, name in OPERATIONS.items():
        names[codes == code] = name
    return pa.array(names, pa.string())
