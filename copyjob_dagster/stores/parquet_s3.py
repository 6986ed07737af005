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
temporary key left behind is deleted by the table's next write. As on a local folder, an
appended window's rows read again are removed from older parts after the new part is in place
(a reader may briefly see them twice). Deletions, SCD2 and merge are not offered here: they
rewrite many objects, which S3 cannot switch at once (Delta on S3 does them in one commit).
"""

import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyarrow import fs
from sqlalchemy.engine import make_url

from copyjob_dagster.config import mask_url
from copyjob_dagster.errors import CopyJobError, DestinationError
from copyjob_dagster.stores.base import (
    TableDescription,
    Window,
    WriteMethod,
    ordered_by_collation,
)
from copyjob_dagster.stores.capabilities import Capabilities
from copyjob_dagster.stores.files import DatasetReader, FolderStore
from copyjob_dagster.stores.locking import file_lock
from copyjob_dagster.stores.object_storage import (
    location_problem,
    lock_file,
    s3_filesystem,
    scrubbed,
)
from copyjob_dagster.stores.parquet_changes import without_rows
from copyjob_dagster.stores.parquet_files import (
    DICTIONARY_PAGE_BYTES,
    INITIAL_PART,
    TEMPORARY_SUFFIX,
    row_groups,
    window_expression,
    window_id,
)
from copyjob_dagster.stores.sql import Role

SCHEME = "parquet+s3"
HIDDEN = (".", "_")


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

    capabilities = Capabilities(merge=False, deletes=False, versions=False, string_lengths=False)

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
        name = INITIAL_PART if window.low is None else f"part-{window_id(window)}.parquet"
        part = self._key(f"{table}/{name}")
        by_identity = window.low is not None and (
            primary_key or ordered_by_collation(schema.field(window.column))
        )
        identity = list(primary_key or (window.column,))
        seen: list[pa.RecordBatch] = []

        def remember(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                if by_identity:
                    seen.append(batch.select(identity))
                yield batch

        with self._translated(table, "writing"):
            self._remove_strays(self._key(table), ".")
            rows = self._put(part, schema, remember(batches))
            older = [p for p in self._parts(table) if p != part]
            if by_identity:
                if seen:
                    written = pa.Table.from_batches(seen)
                    for path in older:
                        self._rewrite(path, identity, lambda b: without_rows(b, written))
            else:
                rewritten = window if window.backfill else dataclasses.replace(window, high=None)
                outside = ~window_expression(rewritten)
                for path in older:
                    self._rewrite(path, [window.column], lambda b: b.filter(outside))
        return rows

    def write_versions(self, table: str, *args: object, **kwargs: object) -> int:
        raise DestinationError(
            f"destination {self.display_url}: table {table!r}: write: scd2 is not offered on "
            f"object storage for Parquet files; use a delta+s3:// destination"
        )

    def diff_keys(self, table: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        raise DestinationError(
            f"destination {self.display_url}: table {table!r}: deletes are not applied on "
            f"object storage for Parquet files; set deletes: ignore or use a delta+s3:// "
            f"destination"
        )

    def _put(self, key: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
        """Write `key` whole: to a hidden temporary key, then one server-side copy onto `key`
        (see the module's doc); return the rows written."""
        folder, _, name = key.rpartition("/")
        temporary = f"{folder}/.{name}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}"
        rows = 0
        try:
            with pq.ParquetWriter(
                temporary,
                schema,
                filesystem=self.s3,
                dictionary_pagesize_limit=DICTIONARY_PAGE_BYTES,
            ) as writer:
                for group in row_groups(batches):
                    table = pa.Table.from_batches(group, schema)
                    writer.write_table(table)
                    rows += table.num_rows
            self.s3.copy_file(temporary, key)
        finally:
            # Not created, or the store is out of reach: the table's next write removes it.
            with contextlib.suppress(OSError):
                self.s3.delete_file(temporary)
        return rows

    def _rewrite(
        self, path: str, needed: list[str], keep: Callable[[pa.RecordBatch], pa.RecordBatch]
    ) -> None:
        """Rewrite the part `path` with only the rows `keep` keeps (streaming), or delete it if
        none remain; parts without the `needed` columns, or where all rows stay, are left."""
        parquet = pq.ParquetFile(path, filesystem=self.s3)
        schema = parquet.schema_arrow
        if not set(needed) <= set(schema.names):
            return
        kept = removed = 0
        for batch in parquet.iter_batches():
            rows = keep(batch).num_rows
            kept, removed = kept + rows, removed + batch.num_rows - rows
        if not removed:
            return
        if not kept:
            self.s3.delete_file(path)
            return
        remaining = (keep(b) for b in pq.ParquetFile(path, filesystem=self.s3).iter_batches())
        self._put(path, schema, remaining)

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
