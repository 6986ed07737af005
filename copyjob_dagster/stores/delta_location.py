"""Where a Delta store's tables live: a local folder, or S3-compatible object storage.

`delta:///relative/folder` and `delta:////absolute/folder` name a folder on this machine;
`delta+s3://bucket/prefix` names a prefix of a bucket, whose credentials and endpoint come
from the environment only (see `object_storage`).
"""

from pathlib import Path

from pyarrow import fs
from sqlalchemy.engine import make_url

from copyjob_dagster.stores.object_storage import (
    location_problem,
    lock_file,
    s3_filesystem,
    storage_options,
)

LOG_FOLDER = "_delta_log"
LOCAL, S3 = "delta", "delta+s3"


def url_problem(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.drivername == S3:
        return location_problem(parsed, S3)
    if parsed.drivername != LOCAL:
        return (
            f"unknown Delta location {parsed.drivername!r}: write delta:///folder or "
            f"delta+s3://bucket/prefix"
        )
    if parsed.host or not parsed.database:
        return "a Delta folder is written delta:///relative/folder or delta:////absolute/folder"
    return None


class DeltaLocation:
    """The root of a Delta store's tables, and how to reach it."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.remote = parsed.drivername == S3
        if self.remote:
            self.bucket = parsed.host or ""
            self.prefix = (parsed.database or "").strip("/")
            self.root = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        else:
            self.root = parsed.database or ""

    def uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    def storage_options(self) -> dict[str, str] | None:
        """delta-rs's options for object storage, read from the environment now."""
        return storage_options() if self.remote else None

    def list_tables(self) -> list[str] | None:
        """The tables (folders with a Delta log) under the root; None if the root is not there
        (see `missing`): a folder, or a bucket (a prefix without objects is empty, not missing)."""
        if not self.remote:
            root = Path(self.root)
            if not root.is_dir():
                return None
            return sorted(p.name for p in root.iterdir() if (p / LOG_FOLDER).is_dir())
        s3 = s3_filesystem()
        if s3.get_file_info(self.bucket).type != fs.FileType.Directory:
            return None
        base = f"{self.bucket}/{self.prefix}".rstrip("/")
        entries = s3.get_file_info(fs.FileSelector(base, allow_not_found=True))
        folders = [e.path for e in entries if e.type == fs.FileType.Directory]
        logs = s3.get_file_info([f"{f}/{LOG_FOLDER}" for f in folders])
        return sorted(
            f.rsplit("/", 1)[-1]
            for f, log in zip(folders, logs, strict=True)
            if log.type == fs.FileType.Directory
        )

    def missing(self) -> str:
        """What is not there when `list_tables` finds no root."""
        if self.remote:
            return f"bucket {self.bucket!r} not found"
        return f"folder {self.root} does not exist"

    def lock_file(self, table: str) -> Path:
        """The lock file of a table: beside it in a folder; for object storage, in this
        machine's temporary folder (so it keeps apart the copies run on this machine)."""
        if not self.remote:
            return Path(self.root) / f".{table}.copyjob-lock"
        return lock_file(self.uri(table))
