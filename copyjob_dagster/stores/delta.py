"""Delta Lake tables (delta-rs) in a folder: one Delta table, a folder with its `_delta_log`, per
copied table.

The URL is `delta:///relative/folder` (against the job file's project folder, as `sqlite:///`
is), `delta:////absolute/folder`, or `delta+s3://bucket/prefix` (see `delta_location`). Every
write is exactly one Delta commit, so a reader sees the table's previous version or the new one,
never a mix, and a killed run leaves the previous version in force: a full copy overwrites the
table; an incremental `append` replaces the rows of its window (those the watermark's value
starts) in the same commit that adds the new ones; `merge` upserts by the primary key, and
deletions ride in that commit, written file by file (`delta_rewrite`), or by delta-rs's merge
(`delta_merge`) for SCD2, tables of features it leaves alone, and columns new at the source
(any write's own schema merge adds them). Writing a window again changes nothing twice.

Each commit carries a token in its commit info, by which the store finds its own commit in the
table's history (even if another writer committed after it) and reports its version and row
counts (`last_commit`). A reader reads one table version, which it names (`version`).
"""

import dataclasses
import functools
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Literal

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from copyjob_dagster.config import mask_url
from copyjob_dagster.errors import CopyJobError, DestinationError, SourceError
from copyjob_dagster.stores.base import (
    Commit,
    DeletePolicy,
    DeletionCounts,
    TableDescription,
    VersionColumns,
    Window,
    WriteMethod,
    ordered_by_collation,
)
from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.datasets import DatasetReader, OneVersionSplit
from copyjob_dagster.stores.delta_changes import DeltaKeyDiff
from copyjob_dagster.stores.delta_feed import CHANGE_FEED, ChangeFeed, has_change_feed
from copyjob_dagster.stores.delta_layout import TABLE_PROPERTIES, TARGET_FILE_BYTES, WRITER
from copyjob_dagster.stores.delta_location import DeltaLocation, url_problem
from copyjob_dagster.stores.delta_merge import (
    WRITE_TOKEN,
    commit_of,
    merge_changes,
    tagged,
    upsert,
)
from copyjob_dagster.stores.delta_rewrite import RepeatedKeys, fits, rewrite
from copyjob_dagster.stores.delta_types import as_delta, delta_schema, window_predicate
from copyjob_dagster.stores.delta_upkeep import DeltaUpkeep
from copyjob_dagster.stores.files import FolderStore
from copyjob_dagster.stores.locking import file_lock
from copyjob_dagster.stores.parquet_files import window_expression
from copyjob_dagster.stores.sql import Role

HISTORY_SEARCHED = 50  # commits after ours that another writer may have made meanwhile


class DeltaStore(OneVersionSplit, DeltaUpkeep, FolderStore):
    """Delta tables in one folder: the folder store's table names, checks and lock; the data
    and its versions in each table's Delta log."""

    capabilities = Capabilities(
        split_reads=True, change_feed=True, applies_changes=None, maintenance=True
    )

    def __init__(self, url: str, role: Role) -> None:
        problem = url_problem(url)
        if problem:
            raise (SourceError if role == "source" else DestinationError)(
                f"{role} {mask_url(url)}: {problem}"
            )
        self.where = DeltaLocation(url)
        super().__init__(self.where.root, role)
        self.display_url = mask_url(url)
        self.last_commit: Commit | None = None
        self._deletions: DeltaKeyDiff | None = None  # found by diff_keys, applied by the window

    @classmethod
    def url_problem(cls, url: str) -> str | None:
        return url_problem(url)

    # -- describing ---------------------------------------------------------------------------

    def _path(self, table: str) -> str:
        self._check_name(table)
        return self.where.uri(table)

    def _table(self, table: str) -> DeltaTable | None:
        path = self._path(table)
        try:
            return DeltaTable(path, storage_options=self.where.storage_options())
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            raise self._error(
                f"{self.role} {path}: cannot read the Delta table: {_first_line(exc)}"
            ) from None

    def _existing(self, table: str) -> DeltaTable:
        found = self._table(table)
        if found is None:
            raise self._error(f"{self.role} {self.where.root}: no Delta table {table!r}")
        return found

    def list_tables(self) -> list[str]:
        with self._translated("", "listing"):
            tables = self.where.list_tables()
        if tables is None:
            raise self._error(f"{self.role} {self.display_url}: {self.where.missing()}")
        return tables

    def describe(self, table: str) -> TableDescription | None:
        found = self._table(table)
        if found is None:
            if self.role == "destination":
                return None
            self._existing(table)  # raises the "not found" error
        return TableDescription(name=table, schema=pa.schema(found.schema().to_arrow()))

    def estimate_rows(self, table: str) -> int:
        return self._existing(table).count()

    def location(self, table: str) -> str:
        return self.where.uri(table)

    def check(self) -> None:
        if not self.where.remote:
            return super().check()
        self.list_tables()

    @contextmanager
    def lock(self, table: str, timeout_seconds: float) -> Iterator[None]:
        """The table's lock file (see `DeltaLocation.lock_file`); across machines on object
        storage, Delta's commit (a conditional put of the next version) refuses the later of
        two writers."""
        self._check_name(table)
        with file_lock(self.where.lock_file(table), timeout_seconds, f"table {table!r}"):
            yield

    @contextmanager
    def open_reader(self, table: str) -> Iterator[DatasetReader]:
        """A reader of the table's latest version: its files are fixed when it opens."""
        found = self._existing(table)
        with self._translated(table, "reading"):
            dataset = found.to_pyarrow_dataset()
        yield DatasetReader(dataset, version=found.version())

    @contextmanager
    def open_feed(self, table: str, since: int | None) -> Iterator[ChangeFeed]:
        """The table's changes after version `since` up to its version now (see delta_feed)."""
        found = self._existing(table)
        if not has_change_feed(found):
            raise self._error(
                f"{self.role} {self.location(table)}: the table has no incremental_column and "
                f"its Delta table does not record a change data feed; set the table property "
                f"{CHANGE_FEED} = true, or name an incremental_column"
            )
        version = found.version()
        if since is not None and since > version:
            raise self._error(
                f"{self.role} {self.location(table)}: the watermark is version {since}, past "
                f"the table's version {version}: the table was recreated; run a full refresh"
            )
        with self._translated(table, "reading"):
            dataset = found.to_pyarrow_dataset()
        yield ChangeFeed(found, since, version, DatasetReader(dataset, version), dataset.schema)

    # -- writing ------------------------------------------------------------------------------

    def replace(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        *,
        updated_by_key: bool = False,
    ) -> int:
        """One commit that overwrites the table (creating it the first time), schema included."""
        target = delta_schema(schema)  # a type Delta cannot hold stops the copy here
        path = self._path(table)
        previous = self._table(table)
        with self._translated(table, "writing"):
            replaced = previous.count() if previous is not None else 0
            if not self.where.remote:
                self.folder.mkdir(parents=True, exist_ok=True)
            return self._overwrite(table, path, target, batches, replaced, "overwrite")

    def write_increment(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        *,
        method: WriteMethod,
        window: Window,
    ) -> int:
        if window.low is None:
            return self.replace(table, schema, primary_key, batches)
        target = delta_schema(schema)
        existing = self._existing(table)
        with self._translated(table, "writing"):
            if self._deletions is not None:
                return self._merge_changes(table, existing, target, primary_key, batches)
            if method == "merge" or primary_key:
                # An appended table's key is the row's key and the incremental column: a row
                # read again replaces its copy, and each version stays.
                return self._merge(table, existing, target, primary_key, batches)
            if ordered_by_collation(schema.field(window.column)):
                raise DestinationError(
                    f"destination {self.display_url}: table {table!r} has no primary key, and "
                    f"its incremental column {window.column!r} is text, which the source orders "
                    f"by its collation and Delta by bytes: rewriting the window's range here "
                    f"could delete rows copied before. Name the table's primary_key, or use a "
                    f"number or time incremental column"
                )
            # A live window is rewritten from its start upward (this snapshot holds all of it);
            # a backfill only between its bounds. The rows it replaces are counted in the
            # version the commit starts from (the table's lock keeps other copies out).
            rewritten = window if window.backfill else dataclasses.replace(window, high=None)
            replaced = existing.to_pyarrow_dataset().count_rows(filter=window_expression(rewritten))
            predicate = window_predicate(rewritten, target)
            return self._overwrite(table, existing, target, batches, replaced, "merge", predicate)

    def _overwrite(
        self,
        table: str,
        where: str | DeltaTable,
        target: pa.Schema,
        batches: Iterable[pa.RecordBatch],
        replaced: int,
        schema_mode: Literal["merge", "overwrite"],
        predicate: str | None = None,
    ) -> int:
        """One commit that replaces the rows `predicate` selects (all without one), `replaced`
        of them, by the batches (of the Delta schema `target`); return the rows it added."""
        token = uuid.uuid4().hex
        write_deltalake(
            where,
            as_delta(batches, target),
            mode="overwrite",
            predicate=predicate,
            schema_mode=schema_mode,
            writer_properties=WRITER,
            commit_properties=tagged(token),
            storage_options=self.where.storage_options() if isinstance(where, str) else None,
            target_file_size=TARGET_FILE_BYTES,
            configuration=TABLE_PROPERTIES,
        )
        return self._record(table, token, deleted=replaced).inserted

    def _merge(
        self,
        table: str,
        existing: DeltaTable,
        target: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
    ) -> int:
        """Upsert the batches by `primary_key` in one commit: file by file where that applies
        (`_merge_changes`), else by delta-rs's merge (`delta_merge.upsert`)."""
        if fits(existing, target, None):
            return self._merge_changes(table, existing, target, primary_key, batches)
        token = uuid.uuid4().hex
        cast = functools.partial(as_delta, schema=target)  # applied as the spill is read back
        written = upsert(existing, primary_key, batches, cast, WRITER, tagged(token))
        self._record(table, token)
        return written

    def _record(self, table: str, token: str, deleted: int = 0) -> Commit:
        """Find this store's commit by its token and keep its version and row counts."""
        found = self._existing(table)
        for entry in found.history(HISTORY_SEARCHED):
            if entry.get(WRITE_TOKEN) == token:
                self.last_commit = commit_of(entry, deleted)
                return self.last_commit
        raise DestinationError(
            f"destination {self.location(table)}: the write's commit is not among the table's "
            f"last {HISTORY_SEARCHED} versions"
        )

    def _merge_changes(
        self,
        table: str,
        existing: DeltaTable,
        target: pa.Schema,
        write_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        versions: VersionColumns | None = None,
    ) -> int:
        """The window's rows and the pending deletions (if any) in one commit: file by file
        (`delta_rewrite`) where that applies, else by delta-rs's merge (SCD2 versions too)."""
        token = uuid.uuid4().hex
        diff = self._deletions
        if versions is None and fits(existing, target, diff.policy if diff else None):
            cast = as_delta(batches, target)
            written = rewrite(existing, write_key, cast, diff, tagged(token), token)
            self._record(table, token)
            return written
        written, metrics = merge_changes(
            existing,
            target,
            write_key,
            batches,
            diff=diff,
            versions=versions,
            writer_properties=WRITER,
            commit_properties=tagged(token),
        )
        self._record(table, token)
        if diff is not None:
            diff.applied = diff.counts(deleted=int(metrics["num_target_rows_deleted"]))
        return written

    def write_versions(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        *,
        versions: VersionColumns,
        window: Window,
    ) -> int:
        """New versions and the closing of older ones (and the pending deletions): one merge."""
        if window.low is None:
            return self.replace(table, schema, primary_key, batches)
        target = delta_schema(schema)
        existing = self._existing(table)
        with self._translated(table, "writing"):
            return self._merge_changes(
                table, existing, target, primary_key, batches, versions=versions
            )

    @contextmanager
    def diff_keys(
        self,
        table: str,
        key_schema: pa.Schema,
        source_keys: Iterable[pa.RecordBatch],
        policy: DeletePolicy,
    ) -> Iterator[DeltaKeyDiff]:
        """The gone keys, found now and applied by the window's commit (or by `apply`'s own
        commit when the window has no row): one commit per run either way."""
        existing = self._existing(table)
        with self._translated(table, "reading"):
            diff = DeltaKeyDiff(
                existing.to_pyarrow_dataset(),
                key_schema,
                source_keys,
                policy,
                apply_alone=lambda d: self._apply_alone(table, d),
            )
        self._deletions = diff
        try:
            yield diff
        finally:
            self._deletions = None
            diff.close()

    def _apply_alone(self, table: str, diff: DeltaKeyDiff) -> DeletionCounts:
        existing = self._existing(table)
        target = pa.schema(existing.schema().to_arrow())
        with self._translated(table, "writing"):
            self._merge_changes(
                table, existing, target, tuple(diff.key), iter(()), versions=diff.policy.versions
            )
        assert diff.applied is not None
        return diff.applied

    def add_columns(self, table: str, fields: list[pa.Field]) -> None:
        """Nothing to do: the window's write merges the new columns into the table's schema in
        its own commit."""

    @contextmanager
    def _translated(self, table: str, doing: str) -> Iterator[None]:
        try:
            yield
        except CopyJobError:
            raise
        except (DeltaError, OSError, pa.ArrowException, RepeatedKeys) as exc:
            raise self._error(
                f"{self.role} {self.location(table)}: {doing} the Delta table failed: "
                f"{_first_line(exc)}"
            ) from None


def _first_line(exc: BaseException) -> str:
    """delta-rs's message without the Rust backtrace it may carry."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)
