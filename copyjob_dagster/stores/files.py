"""A folder of Parquet (or CSV) files: one file, or one folder of files, per table.

A table named `orders` is read from `orders.parquet`, a folder `orders/` of Parquet files, or
`orders.csv`. It is written as `orders.parquet`: to a temporary file beside it, flushed to disk,
then renamed over the old one, so that a reader or a crash never meets half a file.
"""

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from copyjob_dagster.errors import DestinationError, SourceError
from copyjob_dagster.stores.base import TableDescription
from copyjob_dagster.stores.sql import Role

TEMPORARY_SUFFIX = ".tmp"


class FolderStore:
    """Tables as Parquet/CSV files in one folder."""

    def __init__(self, folder: str, role: Role) -> None:
        self.folder = Path(folder)
        self.display_url = str(self.folder)
        self.role = role

    def _candidates(self, table: str) -> list[tuple[Path, str]]:
        return [
            (self.folder / f"{table}.parquet", "parquet"),
            (self.folder / table, "parquet"),
            (self.folder / f"{table}.csv", "csv"),
        ]

    def _dataset(self, table: str) -> ds.Dataset | None:
        for path, file_format in self._candidates(table):
            if path.exists():
                try:
                    return ds.dataset(path, format=file_format, exclude_invalid_files=False)
                except (pa.ArrowException, OSError) as exc:
                    raise self._error(f"{self.role} {path}: cannot read: {exc}") from None
        return None

    @property
    def _error(self) -> type[SourceError] | type[DestinationError]:
        return SourceError if self.role == "source" else DestinationError

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

    def describe(self, table: str) -> TableDescription | None:
        dataset = self._dataset(table)
        if dataset is None:
            if self.role == "destination":
                return None
            raise SourceError(f"source folder {self.folder}: no {table}.parquet, {table}/ or {table}.csv")
        return TableDescription(name=table, schema=dataset.schema)

    def check(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / f".copyjob-check{TEMPORARY_SUFFIX}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise self._error(f"{self.role} folder {self.folder} is not writable: {exc.strerror}") from None

    def location(self, table: str) -> str:
        return str(self.folder / f"{table}.parquet")

    @contextmanager
    def open_reader(self, table: str) -> Iterator["DatasetReader"]:
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
    ) -> int:
        target = self.folder / f"{table}.parquet"
        temporary = target.with_name(target.name + TEMPORARY_SUFFIX)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            rows = 0
            with pq.ParquetWriter(temporary, schema) as writer:
                for batch in batches:
                    if batch.num_rows:
                        writer.write_batch(batch)
                        rows += batch.num_rows
            _fsync(temporary)
            os.replace(temporary, target)
            _fsync(self.folder)
        except OSError as exc:
            raise DestinationError(f"destination {target}: writing failed: {exc.strerror}") from None
        finally:
            temporary.unlink(missing_ok=True)
        return rows

    def close(self) -> None:
        pass


class DatasetReader:
    """Streams a Parquet/CSV dataset's columns in batches; the file list is fixed at open."""

    def __init__(self, dataset: ds.Dataset) -> None:
        self._dataset = dataset

    def batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        yield from self._dataset.to_batches(columns=columns, batch_size=batch_rows)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
