"""The Dagster webserver as the tests meet it: started on the project's workspace, asked
through GraphQL, and stopped with its whole process group."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
READY_SECONDS = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serve(
    command: list[str], env: dict[str, str], log_path: Path, workspace: bool = True
) -> Iterator[str]:
    """Start `dagster-webserver`, `dagster dev` or `copyjob ui` on a free port; yield its URL
    (not yet ready). `workspace`: name the project's workspace.yaml (`copyjob ui` does itself).

    The server runs in its own process group (it may ignore signals sent to it alone) and the
    group is stopped as a whole."""
    port = free_port()
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(BIN / command[0]), *command[1:], *(["-w", "workspace.yaml"] if workspace else [])]
            + ["-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def wait_until_ready(url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    pytest.fail(
        f"the webserver was not ready after {READY_SECONDS} s:\n{log_path.read_text()[-3000:]}"
    )


def graphql(url: str, query: str, **variables: Any) -> dict[str, Any]:
    """The whole GraphQL answer (`data` and all); fails the test on GraphQL errors."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    assert "errors" not in answer, answer["errors"]
    return answer


def copyjob(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`copyjob ARGS` in the project folder, its output captured."""
    return subprocess.run(
        [str(BIN / "copyjob"), *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@contextmanager
def ui_page(width: int = 1400) -> Iterator[Any]:
    """A Chromium page through Playwright, Dagster's community dialog dismissed whenever it comes
    up; skips (fails under CI) where Chromium or Playwright is missing."""
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.set_default_timeout(60_000)
        # The dialog comes up a second after a page loads, over whatever a screenshot shows:
        # mark it seen (the UI keeps that in localStorage) before any page loads.
        page.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
        page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
        try:
            yield page
        finally:
            browser.close()


def _chromium() -> str:
    """The Chromium executable for Playwright, or skip (fail under CI) when it is missing."""
    executable = os.environ.get("COPYJOB_TEST_CHROMIUM") or shutil.which("chromium")
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "Playwright is not installed (pip install -e '.[dev]')"
    if executable is None:
        missing = "Chromium is not installed (apt-get install -y chromium)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    return executable
