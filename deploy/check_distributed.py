"""Checks, on one machine, what docs/production.md ("Beyond one machine") says of the instance file
deploy/dagster.k8s.yaml: the instance loads with the K8sRunLauncher as the file configures it
(pointed at a kubeconfig for an unreachable cluster instead of the pod's own account), and the
project's definitions load beside it. No run is launched: there is no cluster here.

The Celery deployment (deploy/dagster.celery.yaml) is checked end to end, on RabbitMQ with two
workers, by the test suite: tests/test_celery.py.

The instance keeps its storage in a scratch PostgreSQL database (COPYJOB_TEST_PG_URL), as
deploy/dagster.postgres.yaml configures it. dagster-k8s is not a dependency: install it
in a throwaway virtualenv beside the project, then run this file with its Python:

    python3 -m venv /tmp/dist && /tmp/dist/bin/pip install -e . \\
      && /tmp/dist/bin/pip install dagster-k8s==0.29.27 'kubernetes<37' google-auth
    /tmp/dist/bin/python deploy/check_distributed.py
"""

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_URL = os.environ.get("COPYJOB_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


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


if __name__ == "__main__":
    main()
