"""The Parquet folder store on S3-compatible object storage: `parquet+s3://bucket/prefix`.

The layout is the folder store's: a table `orders` is read from `prefix/orders.parquet`, the
"folder" `prefix/orders/` of Parquet files, or `prefix/orders.csv`; a full copy writes
`prefix/orders.parquet`, an incremental copy one `orders/part-<window>.parquet` per window.
Credentials and endpoint come from the environment only (see `object_storage`).

S3 has no rename, and pyarrow completes an upload when its stream closes, even after an
error. So every object is first written whole under a hidden temporary key beside its final
name (`.<name>.<token>.tmp`: pyarrow, Spark and DuckDB skip names starting with `.`), then
server-side copied onto its final key (one `CopyObject`: S3 replaces an object atomically, so
each GET of the key returns the previous object or the new one, whole), then the temporary key
is deleted. A write that fails or is killed before the copy leaves the previous object; a
temporary key left behind is deleted by the table's next write. Appends are the local folder's
(`parquet_parts`: a reader may briefly see a window's rows read again twice). A `mode: cdc`
run's change log is one object, put whole at the end of the run. Deletions, SCD2 and merge are
not offered here: they rewrite many objects, which S3 cannot switch at once (`WHY_NOT`; Delta
on S3 does them in one commit).
"""

import contextlib
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyarrow import fs
from sqlalchemy.engine import make_url

from copyjob_dagster.config import mask_url
from copyjob_dagster.errors import CopyJobError, DestinationError
from copyjob_dagster.stores.base import TableDescription, Window, WriteMethod
from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.change_apply import ChangeLog, change_log, change_log_name
from copyjob_dagster.stores.datasets import DatasetReader
from copyjob_dagster.stores.files import FolderStore
from copyjob_dagster.stores.locking import file_lock
from copyjob_dagster.stores.object_storage import (
    location_problem,
    lock_file,
    s3_filesystem,
    scrubbed,
)
from copyjob_dagster.stores.parquet_files import (
    DICTIONARY_PAGE_BYTES,
    TEMPORARY_SUFFIX,
    row_groups,
)
from copyjob_dagster.stores.parquet_parts import append_window
from copyjob_dagster.stores.sql import Role

SCHEME = "parquet+s3"
HIDDEN = (".", "_")
WHY_NOT = (
    "deletions and row versions rewrite several objects, and object storage cannot replace "
    "several objects at once, so a reader could see some rewritten and others not: use a "
    "delta+s3:// destination, which commits them in one version"
)


def url_problem(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.drivername != SCHEME:
        return (
            f"unknown Parquet location {parsed.drivername!r}: write a folder path, or "
            f"{SCHEME}://bucket/prefix"
        )
    return location_problem(parsed, SCHEME)


class S3FolderStore(FolderStore):
    """Tables as Parquet/CSV objects under one prefix of a bucket."""

    capabilities = Capabilities(
        merge=False,
        deletes=False,
        versions=False,
        string_lengths=False,
        why_not=WHY_NOT,
        applies_changes="log",
    )

    def __init__(self, url: str, role: Role) -> None:
        super().__init__(url, role)
        problem = url_problem(url)
        if problem:
            raise self._error(f"{role} {mask_url(url)}: {problem}")
        parsed = make_url(url)
        self.bucket = parsed.host or ""
        self.base = f"{self.bucket}/{(parsed.database or '').strip('/')}".rstrip("/")
        self.display_url = f"s3://{self.base}"
        self.s3 = s3_filesystem()

    @classmethod
    def url_problem(cls, url: str) -> str | None:
        return url_problem(url)

    # -- reading ------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self.base}/{name}"

    def _info(self, *names: str) -> list[fs.FileInfo]:
        with self._translated("", "reading"):
            return self.s3.get_file_info([self._key(n) for n in names])

    def _parts(self, table: str) -> list[str]:
        selector = fs.FileSelector(self._key(table), allow_not_found=True)
        entries = self.s3.get_file_info(selector)
        return sorted(
            e.path
            for e in entries
            if e.type == fs.FileType.File
            and e.base_name.endswith(".parquet")
            and not e.base_name.startswith(HIDDEN)
        )

    def _dataset(self, table: str) -> ds.Dataset | None:
        self._check_name(table)
        names = [f"{table}.parquet", table, f"{table}.csv"]
        for info, name in zip(self._info(*names), names, strict=True):
            if info.type == fs.FileType.NotFound:
                continue
            with self._translated(table, f"reading s3://{info.path}:"):
                if info.type == fs.FileType.Directory:
                    files = self._parts(table)
                    schemas = [pq.read_schema(f, filesystem=self.s3) for f in files]
                    schema = pa.unify_schemas(schemas) if schemas else None
                    return ds.dataset(files, schema=schema, format="parquet", filesystem=self.s3)
                file_format = "csv" if name.endswith(".csv") else "parquet"
                return ds.dataset(info.path, format=file_format, filesystem=self.s3)
        return None

    def describe(self, table: str) -> TableDescription | None:
        found = self._dataset(table)
        if found is None:
            if self.role == "destination":
                return None
            raise self._error(
                f"source {self.display_url}: no {table}.parquet, {table}/ or {table}.csv"
            )
        return TableDescription(name=table, schema=found.schema)

    def list_tables(self) -> list[str]:
        self.check()
        with self._translated("", "listing"):
            entries = self.s3.get_file_info(fs.FileSelector(self.base, allow_not_found=True))
        names = set()
        for entry in entries:
            name = entry.base_name
            if name.startswith(HIDDEN):
                continue
            if entry.type == fs.FileType.Directory:
                names.add(name)
            elif name.endswith((".parquet", ".csv")):
                names.add(name.rsplit(".", 1)[0])
        return sorted(names)

    def check(self) -> None:
        """The bucket is there and the credentials may reach it."""
        with self._translated("", "reaching the bucket"):
            bucket = self.s3.get_file_info(self.bucket)
        if bucket.type != fs.FileType.Directory:
            raise self._error(f"{self.role} {self.display_url}: bucket {self.bucket!r} not found")

    def location(self, table: str) -> str:
        folder = self._info(table)[0]
        name = table if folder.type == fs.FileType.Directory else f"{table}.parquet"
        return f"s3://{self._key(name)}"

    @contextmanager
    def open_reader(self, table: str) -> Iterator[DatasetReader]:
        dataset = self._dataset(table)
        if dataset is None:
            self.describe(table)  # raises the "not found" error
        yield DatasetReader(dataset)

    @contextmanager
    def lock(self, table: str, timeout_seconds: float) -> Iterator[None]:
        """A lock file on this machine (see `object_storage.lock_file`): two machines writing
        one table are not kept apart."""
        self._check_name(table)
        with file_lock(lock_file(f"s3://{self._key(table)}"), timeout_seconds, f"table {table!r}"):
            yield

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
        self._check_name(table)
        with self._translated(table, "writing"):
            self._remove_strays(self.base, f".{table}.parquet.")
            return self._put(self._key(f"{table}.parquet"), schema, batches)

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
                f"destination {self.display_url}: Parquet files cannot be merged by key; "
                f"use write: append (or a delta+s3:// destination)"
            )
        self._check_name(table)
        with self._translated(table, "writing"):
            return append_window(S3Parts(self, table), schema, primary_key, batches, window)

    def write_versions(self, table: str, *args: object, **kwargs: object) -> int:
        raise DestinationError(
            f"destination {self.display_url}: table {table!r}: write: scd2: {WHY_NOT}"
        )

    def diff_keys(self, table: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        raise DestinationError(
            f"destination {self.display_url}: table {table!r}: deletes: {WHY_NOT} (or set "
            f"deletes: ignore)"
        )

    @contextmanager
    def applying_changes(
        self, table: str, schema: pa.Schema, key: tuple[str, ...], start: int
    ) -> Iterator[ChangeLog]:
        """A run's change log (see `change_apply`), gathered in a local temporary folder, then
        put whole as one object, `<table>_changes/changes-<start>.parquet`: a reader sees all
        of the run's changes or none, and a run replayed from the same position replaces it."""
        self._check_name(table)
        name = change_log_name(table, start)
        with tempfile.TemporaryDirectory(prefix="copyjob-changes-") as folder:
            with change_log(Path(folder), table, schema, start) as log:
                yield log
            written = Path(folder) / name
            if written.exists():
                with self._translated(table, "writing the change log"):
                    self._remove_strays(self._key(f"{table}_changes"), ".")
                    with self._switched(self._key(name)) as temporary:
                        fs.copy_files(str(written), temporary, destination_filesystem=self.s3)

    @contextmanager
    def _switched(self, key: str) -> Iterator[str]:
        """A hidden temporary key beside `key` to write whole; once written, one server-side
        copy puts it onto `key` (see the module's doc). It is deleted either way."""
        folder, _, name = key.rpartition("/")
        temporary = f"{folder}/.{name}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}"
        try:
            yield temporary
            self.s3.copy_file(temporary, key)
        finally:
            # Not created, or the store is out of reach: the table's next write removes it.
            with contextlib.suppress(OSError):
                self.s3.delete_file(temporary)

    def _put(self, key: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
        """Write `key` whole (see `_switched`); return the rows written."""
        rows = 0
        with (
            self._switched(key) as temporary,
            pq.ParquetWriter(
                temporary,
                schema,
                filesystem=self.s3,
                dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
            ) as writer,
        ):
            for group in row_groups(batches):
                table = pa.Table.from_batches(group, schema)
                writer.write_table(table)
                rows += table.num_rows
        return rows

    def _remove_strays(self, folder: str, prefix: str) -> None:
        """Delete the temporary keys under `folder` starting with `prefix` that a killed or
        failed write left; never a finished object."""
        selector = fs.FileSelector(folder, allow_not_found=True)
        for entry in self.s3.get_file_info(selector):
            name = entry.base_name
            if (
                entry.type == fs.FileType.File
                and name.startswith(prefix)
                and (name.endswith(TEMPORARY_SUFFIX))
            ):
                self.s3.delete_file(entry.path)

    @contextmanager
    def _translated(self, table: str, doing: str) -> Iterator[None]:
        try:
            yield
        except CopyJobError:
            raise
        except (OSError, pa.ArrowException) as exc:
            where = f"{self.display_url}/{table}" if table else self.display_url
            raise self._error(
                f"{self.role} {where}: {doing} failed: {scrubbed(str(exc).strip())}"
            ) from None


class S3Parts:
    """A table's part objects under `<prefix>/<table>/` (see `parquet_parts`)."""

    def __init__(self, store: S3FolderStore, table: str) -> None:
        self.store, self.table = store, table

    def path(self, name: str) -> str:
        return self.store._key(f"{self.table}/{name}")

    def paths(self) -> list[str]:
        return self.store._parts(self.table)

    def open(self, path: str) -> pq.ParquetFile:
        return pq.ParquetFile(path, filesystem=self.store.s3)

    def write(self, path: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
        return self.store._put(path, schema, batches)

    def delete(self, path: str) -> None:
        self.store.s3.delete_file(path)

    def remove_strays(self) -> None:
        self.store._remove_strays(self.store._key(self.table), ".")
