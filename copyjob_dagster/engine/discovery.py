"""What a store holds, for the `copyjob new` wizard: tables with row counts, columns, keys,
the columns an incremental copy can follow, and whether a destination can be written.

Engine layer: the wizard reaches stores only through here. Never imports Dagster.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa

from copyjob_dagster.config import StoreConfig
from copyjob_dagster.engine.watermark import watermark_kind
from copyjob_dagster.errors import CopyJobError, SchemaError
from copyjob_dagster.stores import Source, TableDescription, open_destination, open_source

# Names whose columns a database usually updates on every write, best first.
_CHANGE_NAMES = ("updated_at", "modified_at", "last_modified", "modified", "updated", "changed_at")
_CHANGE_WORDS = ("updat", "modif", "chang")


@dataclass(frozen=True)
class TableSummary:
    name: str
    rows: int


@dataclass(frozen=True)
class Candidate:
    """A column an incremental copy can follow, and the kind of values it holds."""

    column: str
    kind: str


class SourceCatalog:
    """An open source, asked about its tables; `explore_source` opens and closes it."""

    def __init__(self, source: Source) -> None:
        self._source = source

    def tables(self) -> list[TableSummary]:
        """Every table with its row count (estimated where counting would scan a big table)."""
        return [TableSummary(name, self._source.estimate_rows(name)) for name in self.names()]

    def names(self) -> list[str]:
        return sorted(self._source.list_tables())

    def describe(self, table: str) -> TableDescription:
        return self._source.describe(table)


@contextmanager
def explore_source(config: StoreConfig) -> Iterator[SourceCatalog]:
    """Connect to a source (raising `SourceError` when it cannot be reached) and explore it."""
    source = open_source(config)
    try:
        source.list_tables()
        yield SourceCatalog(source)
    finally:
        source.close()


def check_destination(config: StoreConfig) -> None:
    """Raise `DestinationError` unless the destination can be reached (a folder: written)."""
    destination = open_destination(config)
    try:
        destination.check()
    finally:
        destination.close()


def logs_in(config: StoreConfig, role: str) -> bool:
    """Whether the store can be reached and logged in to with this URL as it is (the wizard
    asks for a password variable only where the login needs a password)."""
    try:
        if role == "source":
            with explore_source(config):
                return True
        check_destination(config)
    except CopyJobError:
        return False
    return True


def incremental_candidates(table: TableDescription, columns: list[str]) -> list[Candidate]:
    """The columns among `columns` that order as numbers or time, most likely to follow first:
    names of columns updated on every write (`updated_at`, `modified`), then an integer `id` or
    key, then other timestamps and dates, then other numbers. Text columns are left out."""
    ranked = []
    for position, name in enumerate(columns):
        field = table.schema.field(name)
        kind = _orderable_kind(field)
        if kind is not None:
            ranked.append((_rank(name, kind, table.primary_key), position, Candidate(name, kind)))
    return [candidate for *_, candidate in sorted(ranked, key=lambda item: item[:2])]


def _orderable_kind(field: pa.Field) -> str | None:
    try:
        kind = watermark_kind(field)
    except SchemaError:
        return None
    return None if kind == "string" else kind


def _rank(name: str, kind: str, primary_key: tuple[str, ...]) -> tuple[int, int]:
    lowered = name.lower()
    if lowered in _CHANGE_NAMES:
        return 0, _CHANGE_NAMES.index(lowered)
    if any(word in lowered for word in _CHANGE_WORDS):
        return 1, 0
    if kind == "integer" and (lowered == "id" or primary_key == (name,)):
        return 2, 0
    if kind in ("timestamp", "timestamp_tz", "date"):
        return 3, 0
    return 4, 0
