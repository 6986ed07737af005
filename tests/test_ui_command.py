"""`copyjob ui` as the README starts it: `.venv/bin/copyjob ui`, the venv's folder not on PATH."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import make_dagster_home
from dagster_web import free_port, graphql, wait_until_ready

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_copyjob_ui_starts_without_the_venv_on_path(tmp_path: Path, shop_db: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "shop.yaml").write_text(
        f'name: shop_ui\nsource: {{url: "sqlite:///{shop_db}"}}\n'
        f'destination: {{url: "{tmp_path / "lake"}"}}\ntables: [{{name: customers}}]\n'
    )
    env = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "DAGSTER_HOME": str(make_dagster_home(tmp_path / "home")),
        "COPYJOB_JOBS_DIR": str(jobs),
    }
    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(BIN / "copyjob"), "ui", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, log)
        nodes = graphql(url, "{ assetNodes { assetKey { path } } }")["data"]["assetNodes"]
        assert {"path": ["shop_ui", "customers"]} in [node["assetKey"] for node in nodes]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
