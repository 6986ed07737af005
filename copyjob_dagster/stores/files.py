"""A folder of Parquet (or CSV) files: one file, or one folder of files, per table.

A table named `orders` is read from `orders.parquet`, a folder `orders/` of Parquet files, or
`orders.csv`. A full copy writes `orders.parquet`; an incremental copy writes the folder
`orders/`, one `part-<window>.parquet` per window. Every file is written beside its final name,
flushed to disk, then renamed into place, so that a reader or a crash never meets half a file.

An incremental window is named after its lower bound, so a rerun from the same watermark
replaces its own file with a superset instead of adding a second one; rows of the window that
older files hold (rows equal to the watermark that are read again) are removed from them after
the new file is in place.
"""

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from copyjob_dagster.errors import DestinationError, SourceError
from copyjob_dagster.stores import parquet_changes
from copyjob_dagster.stores.base import (
    Commit,
    DeletePolicy,
    TableDescription,
    VersionColumns,
    Window,
    WriteMethod,
)
from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.datasets import DatasetReader
from copyjob_dagster.stores.locking import file_lock
from copyjob_dagster.stores.parquet_files import (
    TEMPORARY_SUFFIX,
    parts,
    write_file,
)
from copyjob_dagster.stores.parquet_parts import LocalParts, append_window
from copyjob_dagster.stores.sql import Role

LOCK_SUFFIX = ".copyjob-lock"
# The longest file name made from a table's name is its lock file, `.<table>.copyjob-lock`.
MAX_TABLE_NAME_BYTES = 255 - len(LOCK_SUFFIX) - 1


class FolderStore:
    """Tables as Parquet/CSV files in one folder."""

    # Files are appended or replaced whole: a change by key rewrites files (deletions, SCD2),
    # but an upsert of each run's rows is not offered.
    capabilities = Capabilities(merge=False, string_lengths=False, applies_changes="log")
    last_commit: Commit | None = None  # files are not versioned
    replaced_rows: int | None = None  # counted by reading the files back

    def __init__(self, folder: str, role: Role) -> None:
        self.folder = Path(folder)
        self.display_url = str(self.folder)
        self.role = role

    @classmethod
    def created_by_opening(cls, url: str) -> bool:
        return False

    @classmethod
    def url_problem(cls, url: str) -> str | None:
        return None

    @property
    def _error(self) -> type[SourceError] | type[DestinationError]:
        return SourceError if self.role == "source" else DestinationError

    def _check_name(self, table: str) -> None:
        """Refuse a table name that is no single file name in the folder: one that would
        reach outside it (`..`, `a/b`), or that is too long for the file system."""
        problem = None
        if table in (".", "..") or "/" in table or "\0" in table:
            problem = "is not a file name in the folder (it holds '/' or is '.' or '..')"
        elif len(table.encode()) > MAX_TABLE_NAME_BYTES:
            problem = (
                f"is {len(table.encode())} bytes long, and file names here hold "
                f"{MAX_TABLE_NAME_BYTES}"
            )
        if problem:
            remedy = "; set `to:` to another name" if self.role == "destination" else ""
            raise self._error(
                f"{self.role} folder {self.folder}: table name {table!r} {problem}{remedy}"
            )

    def _dataset(self, table: str) -> ds.Dataset | None:
        self._check_name(table)
        candidates = [
            (self.folder / f"{table}.parquet", "parquet"),
            (self.folder / table, "parquet"),
            (self.folder / f"{table}.csv", "csv"),
        ]
        for path, file_format in candidates:
            if not path.exists():
                continue
            try:
                if path.is_dir():
                    files = parts(path)
                    schemas = [pq.read_schema(f) for f in files]
                    schema = pa.unify_schemas(schemas) if schemas else None
                    return ds.dataset([str(f) for f in files], schema=schema, format="parquet")
                return ds.dataset(path, format=file_format)
            except (pa.ArrowException, OSError) as exc:
                raise self._error(f"{self.role} {path}: cannot read: {exc}") from None
        return None

    def list_tables(self) -> list[str]:
        if not self.folder.is_dir():
            raise self._error(f"{self.role} folder {self.folder} does not exist")
        names = set()
        for entry in self.folder.iterdir():
            if entry.name.startswith((".", "_")):
                continue
            if entry.suffix in (".parquet", ".csv"):
                names.add(entry.stem)
            elif entry.is_dir():
                names.add(entry.name)
        return sorted(names)

    def stored_field(self, field: pa.Field) -> pa.Field:
        return field  # Parquet keeps Arrow's types

    def type_name(self, field: pa.Field) -> str:
        return str(field.type)

    def describe(self, table: str) -> TableDescription | None:
        dataset = self._dataset(table)
        if dataset is None:
            if self.role == "destination":
                return None
            raise SourceError(
                f"source folder {self.folder}: no {table}.parquet, {table}/ or {table}.csv"
            )
        return TableDescription(name=table, schema=dataset.schema)

    def estimate_rows(self, table: str) -> int:
        """Read from the Parquet footers, without reading data; a CSV file is scanned."""
        dataset = self._dataset(table)
        if dataset is None:
            self.describe(table)  # raises the "not found" error
        try:
            return dataset.count_rows()
        except (pa.ArrowException, OSError) as exc:
            raise self._error(f"{self.role} table {table!r}: cannot count rows: {exc}") from None

    def check(self) -> None:
        """The folder (or, before the first copy, its nearest existing parent) is writable."""
        existing = next(p for p in (self.folder, *self.folder.parents) if p.exists())
        try:
            probe = existing / f".copyjob-check{TEMPORARY_SUFFIX}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise self._error(
                f"{self.role} folder {self.folder} is not writable: {exc.strerror}"
            ) from None

    def location(self, table: str) -> str:
        folder = self.folder / table
        return str(folder) if folder.is_dir() else str(self.folder / f"{table}.parquet")

    @contextmanager
    def open_reader(self, table: str) -> Iterator[DatasetReader]:
        dataset = self._dataset(table)
        if dataset is None:
            self.describe(table)  # raises the "not found" error
        yield DatasetReader(dataset)

    def replace(
        self,
        table: str,
        schema: pa.Schema,
        primary_key: tuple[str, ...],
        batches: Iterable[pa.RecordBatch],
        *,
        updated_by_key: bool = False,
    ) -> int:
        self._check_name(table)
        target = self.folder / f"{table}.parquet"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            return write_file(target, schema, batches)
        except OSError as exc:
            raise DestinationError(
                f"destination {target}: writing failed: {exc.strerror}"
            ) from None

    def applying_changes(
        self, table: str, schema: pa.Schema, key: tuple[str, ...], start: int
    ) -> AbstractContextManager[Any]:
        """An append-only change log beside the table (see `change_apply`)."""
        from copyjob_dagster.stores.change_apply import change_log

        self._check_name(table)
        return change_log(self.folder, table, schema, start)

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
        if method == "merge":
            raise DestinationError(
                f"destination folder {self.folder}: Parquet files cannot be merged by key; "
                f"use write: append"
            )
        self._check_name(table)
        folder = self.folder / table
        try:
            return append_window(LocalParts(folder), schema, primary_key, batches, window)
        except OSError as exc:
            raise DestinationError(
                f"destination {folder}: writing failed: {exc.strerror}"
            ) from None

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
        self._check_name(table)
        try:
            return parquet_changes.write_versions(
                self, table, schema, primary_key, batches, versions, window
            )
        except OSError as exc:
            raise DestinationError(
                f"destination {self.folder / table}: writing failed: {exc.strerror}"
            ) from None

    @contextmanager
    def diff_keys(
        self,
        table: str,
        key_schema: pa.Schema,
        source_keys: Iterable[pa.RecordBatch],
        policy: DeletePolicy,
    ) -> Iterator[parquet_changes.ParquetKeyDiff]:
        self._check_name(table)
        try:
            with parquet_changes.diff_keys(self, table, key_schema, source_keys, policy) as diff:
                yield diff
        except OSError as exc:
            raise DestinationError(
                f"destination {self.folder / table}: finding deleted rows failed: {exc.strerror}"
            ) from None

    def add_columns(self, table: str, fields: list[pa.Field]) -> None:
        """Nothing to do: new files carry the new columns, and readers unify the schemas."""

    @contextmanager
    def lock(self, table: str, timeout_seconds: float) -> Iterator[None]:
        self._check_name(table)
        lock_file = self.folder / f".{table}{LOCK_SUFFIX}"
        with file_lock(lock_file, timeout_seconds, f"table {self.location(table)!r}"):
            yield

    def close(self) -> None:
        pass
