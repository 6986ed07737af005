"""S3-compatible object storage, shared by the stores that keep tables there (Delta,
Parquet): the credentials and endpoint from the environment, a pyarrow file system, the
refusal of credentials in a URL, and the table lock on this machine.

The credentials and the endpoint come from the environment of the process that runs the copy,
as every AWS tool reads them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
`AWS_REGION`, `AWS_ENDPOINT_URL` for an S3-compatible server), never from the job file: a URL
with a user or password in it is refused, and none of these values reaches a message.
"""

import hashlib
import os
import tempfile
from pathlib import Path

from pyarrow import fs
from sqlalchemy.engine import URL

# Passed to delta-rs as they are set; AWS_ALLOW_HTTP is set for an http:// endpoint.
ENV_OPTIONS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
)
SECRET_OPTIONS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
DEFAULT_REGION = "us-east-1"


def location_problem(parsed: URL, scheme: str) -> str | None:
    """Why `parsed` (a `scheme://bucket/prefix` URL) names no place in object storage."""
    if parsed.username or parsed.password:
        return (
            "object storage credentials come from the environment (AWS_ACCESS_KEY_ID, "
            f"AWS_SECRET_ACCESS_KEY), never from the job file: write {scheme}://bucket/prefix"
        )
    if not parsed.host or parsed.port or parsed.query:
        return f"a location on S3 is written {scheme}://bucket/prefix"
    return None


def storage_options() -> dict[str, str]:
    """The AWS_* variables as they are set now (delta-rs's storage options)."""
    options = {name: os.environ[name] for name in ENV_OPTIONS if os.environ.get(name)}
    options.setdefault("AWS_REGION", DEFAULT_REGION)
    if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        options.setdefault("AWS_ALLOW_HTTP", "true")
    return options


def s3_filesystem() -> fs.S3FileSystem:
    """pyarrow's S3 file system, configured from the environment now."""
    options = storage_options()
    endpoint = options.get("AWS_ENDPOINT_URL", "")
    scheme, _, host = endpoint.rpartition("://")
    return fs.S3FileSystem(
        access_key=options.get("AWS_ACCESS_KEY_ID"),
        secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
        session_token=options.get("AWS_SESSION_TOKEN"),
        region=options["AWS_REGION"],
        endpoint_override=host.rstrip("/") or None,
        scheme=scheme or "https",
    )


def scrubbed(text: str) -> str:
    """`text` with the value of every credential variable replaced by ***."""
    for name in SECRET_OPTIONS:
        value = os.environ.get(name)
        if value:
            text = text.replace(value, "***")
    return text


def lock_file(uri: str) -> Path:
    """The lock file of a table on object storage: in this machine's temporary folder, so it
    keeps apart the copies run on this machine (across machines it cannot reach)."""
    digest = hashlib.sha256(uri.encode()).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / "copyjob-locks" / f"s3-{digest}.lock"
