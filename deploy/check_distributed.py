"""Checks, on one machine, what README's "Beyond one machine" says about the instance files
deploy/dagster.k8s.yaml and deploy/dagster.celery.yaml.

- Kubernetes: the instance loads with the K8sRunLauncher as the file configures it (pointed at
  a kubeconfig for an unreachable cluster instead of the pod's own account), and the project's
  definitions load beside it. No run is launched: there is no cluster here.
- Celery: a real run through the CeleryRunLauncher. A Celery worker is started locally
  (`dagster-celery worker start`), with kombu's filesystem transport as the broker and a
  folder as the result backend, in place of Redis or RabbitMQ, beside `dagster-daemon run`;
  `dagster job launch` queues a run of a copy job, the daemon hands it to the launcher, a
  worker executes it, and the check reads the run's status, its pool limit and the copied
  rows.

Both instances keep their storage in a scratch PostgreSQL database (COPYJOB_TEST_PG_URL), as
deploy/dagster.postgres.yaml configures it. The packages are not the project's: install them
in a throwaway virtualenv beside the project, then run this file with its Python:

    python3 -m venv /tmp/dist && /tmp/dist/bin/pip install -e . \\
      && /tmp/dist/bin/pip install dagster-celery==0.29.27 dagster-k8s==0.29.27 \\
         celery==5.7.0 'kubernetes<37' google-auth
    /tmp/dist/bin/python deploy/check_distributed.py
"""

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import sqlalchemy as sa
import yaml

from copyjob_dagster.cli.sample import create_shop

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_URL = os.environ.get("COPYJOB_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
RUN_TIMEOUT_SECONDS = 120


def main() -> None:
    database = f"cj_dist_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {database}"))
    url = sa.engine.make_url(PG_URL)
    os.environ.update(
        DAGSTER_PG_HOST=url.host or "localhost",
        DAGSTER_PG_PORT=str(url.port or 5432),
        DAGSTER_PG_USERNAME=url.username or "",
        DAGSTER_PG_PASSWORD=url.password or "",
        DAGSTER_PG_DB=database,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="copyjob_dist_") as scratch:
            check_kubernetes(Path(scratch) / "k8s")
            check_celery(Path(scratch) / "celery")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()
    print("all checks passed")


def check_kubernetes(root: Path) -> None:
    home = root / "home"
    home.mkdir(parents=True)
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {"token": "unused"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    config = yaml.safe_load((PROJECT / "deploy" / "dagster.k8s.yaml").read_text())
    launcher = config["run_launcher"]["config"]
    launcher.update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    os.environ["COPYJOB_IMAGE"] = "registry.example.com/copyjob:0.1.0"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        name = type(instance.run_launcher).__name__
        assert name == "K8sRunLauncher", name
        storage = type(instance.event_log_storage).__name__
    validated = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert validated.returncode == 0, validated.stderr
    print(f"kubernetes: the instance loads with {name} on {storage}; definitions validate")


def check_celery(root: Path) -> None:
    home, queue, results = root / "home", root / "broker", root / "results"
    for folder in (home, queue / "in", queue / "processed", queue / "control", results):
        folder.mkdir(parents=True)
    # Both ends of the filesystem transport read and write one folder.
    filesystem_broker = {
        "broker_transport_options": {
            "data_folder_in": str(queue / "in"),
            "data_folder_out": str(queue / "in"),
            "processed_folder": str(queue / "processed"),
            "control_folder": str(queue / "control"),  # else kombu writes ./control
        }
    }
    config = yaml.safe_load((PROJECT / "deploy" / "dagster.celery.yaml").read_text())
    config["run_launcher"]["config"]["config_source"] = filesystem_broker
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    worker_config = yaml.safe_load((PROJECT / "deploy" / "celery-worker.yaml").read_text())
    worker_config["execution"]["config"]["config_source"] = filesystem_broker
    (root / "worker.yaml").write_text(yaml.safe_dump(worker_config))

    shop, lake, jobs = root / "shop.sqlite", root / "lake", root / "jobs"
    create_shop(shop, scale=0.01)
    jobs.mkdir()
    (jobs / "shop_celery.yaml").write_text(
        f"name: shop_celery\nsource: {{url: 'sqlite:///{shop}', name: shop, max_connections: 1}}"
        f"\ndestination: {{url: '{lake}'}}\ntables: [{{name: customers}}, {{name: orders}}]\n"
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COPYJOB_JOBS_DIR": str(jobs),
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BACKEND_URL": f"file://{results}",
    }
    # The daemon takes queued runs to the run launcher, as in production.
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=PROJECT,
        env=env,
        stdout=(root / "daemon.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = subprocess.Popen(
        [
            str(BIN / "dagster-celery"),
            "worker",
            "start",
            "-A",
            "dagster_celery.app",
            "-y",
            str(root / "worker.yaml"),
            "--",
            "--pool=solo",  # a prefork child is daemonic: it cannot start step processes
        ],
        cwd=PROJECT,
        env={**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}"},
        stdout=(root / "worker.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _check(subprocess.run([str(BIN / "copyjob"), "pools"], cwd=PROJECT, env=env))
        launched = subprocess.run(
            [str(BIN / "dagster"), "job", "launch", "-w", "workspace.yaml", "-j", "shop_celery"],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert launched.returncode == 0, launched.stderr
        run = _wait_for_run(home)
    finally:
        for process in (daemon, worker):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
    log = (root / "worker.log").read_text()
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS, (
        f"run {run.status if run else 'not finished'}; worker log:\n{log[-5000:]}\n"
        f"daemon log:\n{(root / 'daemon.log').read_text()[-3000:]}"
    )
    with sqlite3.connect(shop) as db:
        for table in ("customers", "orders"):
            expected = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            copied = pq.read_table(lake / f"{table}.parquet").num_rows
            assert copied == expected, (table, copied, expected)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        pools = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
        entries = [r.event_log_entry for r in instance.get_records_for_run(run.run_id).records]
    task = run.tags["dagster-celery/task_id"]  # set by the CeleryRunLauncher
    assert f"Task execute_job[{task}] succeeded" in log, log[-5000:]
    assert list(pools.values()) == [1], pools
    # max_connections: 1 held the second table back until the first was copied.
    spans: dict[str, list[float]] = {}
    for entry in entries:
        if entry.dagster_event_type in (
            dg.DagsterEventType.STEP_START,
            dg.DagsterEventType.STEP_SUCCESS,
        ):
            spans.setdefault(entry.step_key, []).append(entry.timestamp)
    (first, second) = sorted(spans.values())
    assert first[1] <= second[0], spans
    print(
        f"celery: run {run.run_id} executed by a Celery worker as task {task}: "
        f"{run.status.value}; customers and orders copied in full, one after the other; "
        f"pool limits {pools}"
    )


def _wait_for_run(home: Path) -> dg.DagsterRun | None:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            runs = instance.get_runs(limit=1)
            if runs and runs[0].is_finished:
                return runs[0]
            time.sleep(1)
    return None


def _check(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done


if __name__ == "__main__":
    main()
