"""Where a Delta store's tables live: a local folder, or S3-compatible object storage.

`delta:///relative/folder` and `delta:////absolute/folder` name a folder on this machine;
`delta+s3://bucket/prefix` names a prefix of a bucket. The credentials and the endpoint of
object storage come from the environment of the process that runs the copy, as delta-rs and
every AWS tool read them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
`AWS_REGION`, `AWS_ENDPOINT_URL` for an S3-compatible server), never from the job file: a URL
with a user or password in it is refused, and none of these values reaches a message.
"""

import hashlib
import os
import tempfile
from pathlib import Path

from pyarrow import fs
from sqlalchemy.engine import make_url

LOG_FOLDER = "_delta_log"
LOCAL, S3 = "delta", "delta+s3"
# Passed to delta-rs as they are set; AWS_ALLOW_HTTP is set for an http:// endpoint.
ENV_OPTIONS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
)
DEFAULT_REGION = "us-east-1"


def url_problem(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.drivername == S3:
        if parsed.username or parsed.password:
            return (
                "object storage credentials come from the environment (AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY), never from the job file: write delta+s3://bucket/prefix"
            )
        if not parsed.host:
            return "a Delta location on S3 is written delta+s3://bucket/prefix"
        return None
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
        if not self.remote:
            return None
        options = {name: os.environ[name] for name in ENV_OPTIONS if os.environ.get(name)}
        options.setdefault("AWS_REGION", DEFAULT_REGION)
        if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
            options.setdefault("AWS_ALLOW_HTTP", "true")
        return options

    def _filesystem(self) -> fs.S3FileSystem:
        options = self.storage_options() or {}
        endpoint = options.get("AWS_ENDPOINT_URL", "")
        scheme, _, host = endpoint.rpartition("://")
        return fs.S3FileSystem(
            access_key=options.get("AWS_ACCESS_KEY_ID"),
            secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
            session_token=options.get("AWS_SESSION_TOKEN"),
            region=options["AWS_REGION"],
            endpoint_override=host or None,
            scheme=scheme or "https",
        )

    def list_tables(self) -> list[str] | None:
        """The tables (folders with a Delta log) under the root; None if the root is not there."""
        if not self.remote:
            root = Path(self.root)
            if not root.is_dir():
                return None
            return sorted(p.name for p in root.iterdir() if (p / LOG_FOLDER).is_dir())
        s3 = self._filesystem()
        base = f"{self.bucket}/{self.prefix}".rstrip("/")
        entries = s3.get_file_info(fs.FileSelector(base, allow_not_found=True))
        folders = [e.path for e in entries if e.type == fs.FileType.Directory]
        logs = s3.get_file_info([f"{f}/{LOG_FOLDER}" for f in folders])
        return sorted(
            f.rsplit("/", 1)[-1]
            for f, log in zip(folders, logs, strict=True)
            if log.type == fs.FileType.Directory
        )

    def lock_file(self, table: str) -> Path:
        """The lock file of a table: beside it in a folder; for object storage, in this
        machine's temporary folder (so it keeps apart the copies run on this machine)."""
        if not self.remote:
            return Path(self.root) / f".{table}.copyjob-lock"
        digest = hashlib.sha256(self.uri(table).encode()).hexdigest()[:32]
        return Path(tempfile.gettempdir()) / "copyjob-locks" / f"delta-{digest}.lock"
