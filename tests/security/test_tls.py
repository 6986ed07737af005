"""TLS options in a job's URL reach the driver: `verify-full` checks the CA and the host name.

The suite's own PostgreSQL server serves a certificate for `localhost` signed by a CA made for
this run. With `sslmode=verify-full` and that CA, connecting by the certificate's name works
(over TLS); by another name of the same server, or with another CA, it is refused with a
message that names the store, without its password.
"""

from pathlib import Path

import pytest
import sqlalchemy as sa

from copyjob_dagster.engine import load_job
from copyjob_dagster.errors import SourceError
from copyjob_dagster.stores import open_source

from .certificates import write_ca_and_server_certificate
from .conftest import PgRole
from .private_pg import SERVER_NAME, PrivatePostgres


def _job_file(folder: Path, server: PrivatePostgres, role: str, host: str, ca: Path) -> Path:
    path = folder / f"tls_{host.replace('.', '_')}_{ca.stem}.yaml"
    path.write_text(
        "name: tls\n"
        f"source: {{url: 'postgresql+psycopg://{role}:${{TLS_PW}}@{host}:{server.port}/postgres"
        f"?sslmode=verify-full&sslrootcert={ca}'}}\n"
        f"destination: {{url: '{folder / 'lake'}'}}\n"
        "tables:\n  - name: anything\n"
    )
    return path


@pytest.fixture(scope="module")
def tls_role(pg_role: PgRole, password: str) -> str:
    return pg_role("tls_user", password)


def test_verify_full_passes_with_the_right_host_name(
    private_postgres: PrivatePostgres,
    tls_role: str,
    password: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TLS_PW", password)
    path = _job_file(tmp_path, private_postgres, tls_role, SERVER_NAME, private_postgres.ca_file)
    source = open_source(load_job(path).source)
    try:
        with source.engine.connect() as conn:
            encrypted = conn.execute(
                sa.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ).scalar()
        assert encrypted is True
        assert source.list_tables() == []
    finally:
        source.close()


@pytest.mark.parametrize("wrong", ["host name", "CA"])
def test_verify_full_refuses_another_host_name_or_ca(
    private_postgres: PrivatePostgres,
    tls_role: str,
    password: str,
    marker: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    wrong: str,
) -> None:
    monkeypatch.setenv("TLS_PW", password)
    ca, host = private_postgres.ca_file, SERVER_NAME
    if wrong == "CA":
        ca = tmp_path / "other_ca.crt"
        write_ca_and_server_certificate(ca, tmp_path / "x.crt", tmp_path / "x.key", SERVER_NAME)
    else:
        host = "127.0.0.1"  # the same server, by a name its certificate does not hold
    source = open_source(load_job(_job_file(tmp_path, private_postgres, tls_role, host, ca)).source)
    try:
        with pytest.raises(SourceError) as refused:
            source.list_tables()
    finally:
        source.close()
    message = str(refused.value)
    assert message.startswith(f"source postgresql+psycopg://{tls_role}:***@{host}:")
    expected = "does not match host name" if wrong == "host name" else "certificate verify failed"
    assert expected in message
    assert marker not in message
