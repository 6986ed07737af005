"""A local S3-compatible server for the object-storage tests: moto in server mode on 127.0.0.1
(a free port), and a fresh bucket per test with the credentials and endpoint set in the
environment only. Import the fixtures into a test module: `from s3_server import bucket,
s3_endpoint` (and list the module in tests/scheduling.py ONE_WORKER, so it starts once)."""

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import pytest

KEY, SECRET = "copyjob-test-key", "copyjob-test-secret-never-shown"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto in server mode, in a process of its own: delta-rs holds the GIL while it pulls
    batches from Python, so a server thread in this process would stall its requests."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def bucket(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    for name, value in {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    name = request.node.name.lower().replace("_", "-")[:50].strip("-")
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )
