"""The Celery deployment of docs/production.md ("Beyond one machine"), end to end on a real broker.

deploy/dagster.celery.yaml as the instance (its storage in a scratch PostgreSQL database),
RabbitMQ as the broker (COPYJOB_TEST_AMQP_URL, default guest@127.0.0.1:5672) and its RPC result
backend, `dagster-daemon run`, and two `dagster-celery` worker processes started as that page says.
Two copy jobs read one source whose `max_connections: 1` is a Dagster pool; both are launched at
once, each run is taken by a different worker, and the pool's one slot holds across the two
workers: no two tables of that source copy at the same time.
"""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import _new_instance_database

from copyjob_dagster.cli.sample import create_shop

pytestmark = pytest.mark.postgres

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
AMQP_URL = os.environ.get("COPYJOB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
RUN_TIMEOUT_SECONDS = 240
JOBS = {"shop_celery_a": ["customers", "orders"], "shop_celery_b": ["products", "order_items"]}


@pytest.fixture(scope="module")
def broker() -> str:
    url = urlsplit(AMQP_URL)
    try:
        socket.create_connection((url.hostname, url.port or 5672), timeout=5).close()
    except OSError as exc:
        message = f"RabbitMQ is not reachable at {url.hostname}:{url.port or 5672}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return AMQP_URL


@pytest.fixture
def deployment(
    pg_server: str, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, object]]:
    """The instance, the job files, the daemon and two workers on a queue of this test's own."""
    home, jobs = tmp_path / "home", tmp_path / "jobs"
    home.mkdir()
    jobs.mkdir()
    monkeypatch.setenv("DAGSTER_PG_DB", _new_instance_database())  # sets DAGSTER_PG_HOST, ...
    queue = f"copyjob-test-{uuid.uuid4().hex[:8]}"
    # One task at a time per worker, acknowledged when done: a solo worker that prefetched a
    # second run would hold it back from the idle worker.
    one_at_a_time = {"worker_prefetch_multiplier": 1, "task_acks_late": True}
    config = yaml.safe_load((PROJECT / "deploy" / "dagster.celery.yaml").read_text())
    config["run_launcher"]["config"].update(default_queue=queue, config_source=one_at_a_time)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    worker_config = yaml.safe_load((PROJECT / "deploy" / "celery-worker.yaml").read_text())
    worker_config["execution"]["config"]["config_source"] = one_at_a_time
    (tmp_path / "worker.yaml").write_text(yaml.safe_dump(worker_config))

    shop = tmp_path / "shop.sqlite"
    create_shop(shop, scale=0.01)
    for name, tables in JOBS.items():
        (jobs / f"{name}.yaml").write_text(
            yaml.safe_dump(
                {
                    "name": name,
                    "source": {"url": f"sqlite:///{shop}", "name": "shop", "max_connections": 1},
                    "destination": {"url": str(tmp_path / "lake")},
                    "tables": [{"name": table} for table in tables],
                }
            )
        )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COPYJOB_JOBS_DIR": str(jobs),
        "CELERY_BROKER_URL": broker,
        "CELERY_BACKEND_URL": "rpc://",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    commands = {
        "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        **{
            f"worker{i}": [str(BIN / "dagster-celery"), "worker", "start", "-A"]
            + ["dagster_celery.app", "-y", str(tmp_path / "worker.yaml"), "-q", queue]
            + ["--name", f"worker{i}", "--", "--pool=solo"]
            for i in (1, 2)
        },
    }
    processes = [
        subprocess.Popen(
            command,
            cwd=PROJECT,
            env=env,
            stdout=(tmp_path / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name, command in commands.items()
    ]
    try:
        _wait_until_ready(tmp_path, ("worker1", "worker2"))
        yield {"home": home, "env": env, "shop": shop, "root": tmp_path}
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)


def _wait_until_ready(root: Path, workers: tuple[str, ...]) -> None:
    """Until every worker consumes the queue: a run sent before the second worker is up would
    go to the first one, and the test could not show two workers sharing the pool."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        logs = {name: (root / f"{name}.log").read_text() for name in workers}
        if all(
            any(f"{name}@" in line and line.endswith(" ready.") for line in log.splitlines())
            for name, log in logs.items()
        ):
            return
        time.sleep(0.5)
    raise AssertionError(
        f"the Celery workers did not start: { {k: v[-2000:] for k, v in logs.items()} }"
    )


def _wait_for_runs(home: Path, count: int) -> list[dg.DagsterRun]:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            runs = instance.get_runs()
            if len(runs) == count and all(run.is_finished for run in runs):
                return runs
            time.sleep(1)
    return []


def test_two_workers_share_the_source_pool(deployment: dict[str, object]) -> None:
    home, env, shop, root = (deployment[k] for k in ("home", "env", "shop", "root"))
    pools = subprocess.run(
        [str(BIN / "copyjob"), "pools"], cwd=PROJECT, env=env, capture_output=True, text=True
    )
    assert pools.returncode == 0, pools.stderr
    launches = [
        subprocess.Popen(
            [str(BIN / "dagster"), "job", "launch", "-w", "workspace.yaml", "-j", name],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in JOBS
    ]
    for launch in launches:
        _, stderr = launch.communicate(timeout=240)
        assert launch.returncode == 0, stderr

    runs = _wait_for_runs(home, len(JOBS))
    logs = {name: (root / f"{name}.log").read_text() for name in ("worker1", "worker2", "daemon")}
    assert runs, f"runs did not finish; logs: { {k: v[-3000:] for k, v in logs.items()} }"
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), logs

    # Each run was a Celery task, and each worker executed one of them.
    tasks = {run.tags["dagster-celery/task_id"] for run in runs}
    for worker in ("worker1", "worker2"):
        done = [task for task in tasks if f"Task execute_job[{task}] succeeded" in logs[worker]]
        assert len(done) == 1, (worker, logs[worker][-3000:])

    with sqlite3.connect(shop) as db:
        for table in (t for tables in JOBS.values() for t in tables):
            expected = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            assert pq.read_table(root / "lake" / f"{table}.parquet").num_rows == expected, table

    # The source's one slot held across both workers: the four copies never overlapped (each
    # copy's span, from its materialization's time and seconds, lies inside its slot).
    with dg.DagsterInstance.from_config(str(home)) as instance:
        limits = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
        spans: dict[tuple[str, str], list[float]] = {}
        for run in runs:
            records = instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            ).records
            for record in records:
                entry = record.event_log_entry
                materialization = entry.asset_materialization
                seconds = materialization.metadata["copyjob/seconds"].value
                table = materialization.asset_key.to_user_string()
                spans[(run.run_id, table)] = [entry.timestamp - seconds, entry.timestamp]
    assert list(limits.values()) == [1], limits
    ordered = sorted(spans.values())
    assert len(ordered) == 4, spans
    for before, after in zip(ordered, ordered[1:], strict=False):
        assert before[1] <= after[0], ordered
