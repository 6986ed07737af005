"""A throwaway PostgreSQL server of the suite's own: password checks, TLS, and a log to read.

The shared test server trusts every local TCP connection (a wrong password passes) and writes
its log where only its packaging knows. This one is made by `initdb` in a temporary folder at
run time, so it works the same on a fresh CI machine: TCP logins are checked with
scram-sha-256, TLS is served with a certificate signed by a CA the suite makes, and the log
goes to a file in the folder that the tests read. Its superuser logs in without a password
through the Unix socket in the folder. As root, the server runs as the `postgres` user, which
then owns the folder.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from .certificates import write_ca_and_server_certificate

SERVER_NAME = "localhost"  # the name in the server's certificate; 127.0.0.1 is not in it
START_SECONDS = 30


class Unavailable(Exception):
    """No PostgreSQL server binaries here, or the server would not start."""


@dataclass(frozen=True)
class PrivatePostgres:
    folder: Path
    port: int
    ca_file: Path
    log_file: Path

    @property
    def admin_url(self) -> str:
        """The superuser, through the Unix socket (trusted: no password)."""
        return f"postgresql+psycopg://postgres@/postgres?host={self.folder}&port={self.port}"

    def url(
        self,
        user: str,
        password: str,
        host: str = "127.0.0.1",
        database: str = "postgres",
        **query: str,
    ) -> str:
        """A TCP URL with the password in it, as a job's `${VAR}` would expand to."""
        return sa.URL.create(
            "postgresql+psycopg",
            username=user,
            password=password,
            host=host,
            port=self.port,
            database=database,
            query=query,
        ).render_as_string(hide_password=False)

    def log(self, since: int = 0) -> str:
        """The server's log from byte offset `since`."""
        with self.log_file.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_file.stat().st_size


def start(settings: str = "", replication: bool = False) -> PrivatePostgres:
    """`settings`: more lines of postgresql.conf (`wal_level = logical`); `replication`: the
    Unix socket also takes replication connections (a logical slot's exported snapshot)."""
    binaries = _binaries()
    folder = Path(tempfile.mkdtemp(prefix="copyjob-pg-"))
    run_as = _run_as_postgres(folder)
    ca_file = folder / "ca.crt"
    write_ca_and_server_certificate(
        ca_file, folder / "server.crt", folder / "server.key", SERVER_NAME
    )
    _give_to_postgres(folder)
    data = folder / "data"
    _run(
        [*run_as, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-N"]
    )
    port = _free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{folder}'\n"
            "ssl = on\n"
            f"ssl_cert_file = '{folder / 'server.crt'}'\n"
            f"ssl_key_file = '{folder / 'server.key'}'\n"
            "fsync = off\n"
            "password_encryption = 'scram-sha-256'\n"
            "log_line_prefix = '%m [%p] user=%u db=%d app=%a: '\n"
            "log_min_error_statement = error\n"
            f"{settings}"
        )
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        + ("local replication all trust\nhost replication all 127.0.0.1/32 scram-sha-256\n"
           if replication else "")
    )  # fmt: skip
    log_file = folder / "server.log"
    _run(
        [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log_file), "-w",
         "-t", str(START_SECONDS), "start"],
        log_file,
    )  # fmt: skip
    return PrivatePostgres(folder, port, ca_file, log_file)


def stop(server: PrivatePostgres) -> None:
    run_as = _run_as_postgres(server.folder)
    subprocess.run(
        [*run_as, str(_binaries() / "pg_ctl"), "-D", str(server.folder / "data"), "-m",
         "immediate", "-w", "stop"],
        capture_output=True,
        check=False,
        timeout=60,
    )  # fmt: skip
    shutil.rmtree(server.folder, ignore_errors=True)


def _binaries() -> Path:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, Path(found).parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise Unavailable("no PostgreSQL server binaries (initdb, pg_ctl) found")


def _run_as_postgres(folder: Path) -> list[str]:
    """PostgreSQL refuses to run as root: run it as `postgres`, or as ourselves."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable(
            "running as root, and there is no postgres user to run the server as"
        ) from None
    return ["runuser", "-u", "postgres", "--"]


def _give_to_postgres(folder: Path) -> None:
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam("postgres")
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)


def _run(command: list[str], log_file: Path | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        log = log_file.read_text(errors="replace")[-2000:] if log_file and log_file.exists() else ""
        raise Unavailable(f"{' '.join(command)} failed: {done.stderr[-2000:]}{log}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
