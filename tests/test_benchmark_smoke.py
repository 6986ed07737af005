"""The speed benchmark (benchmarks/run.py) still runs: 10,000 rows, copyjob's own two ways and
the references that need no peer tools, every way's copy counted at its destination."""

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
ROWS = 10_000


def _server(url: str, scheme: str) -> str:
    parsed = sa.engine.make_url(url)
    return f"{scheme}://{parsed.username}@{parsed.host}:{parsed.port}"


def _tables(markdown: str) -> dict[str, dict[str, str]]:
    """Per pairing (### heading), each way's `rows copied` cell."""
    found: dict[str, dict[str, str]] = {}
    current = None
    for line in markdown.splitlines():
        if line.startswith("### "):
            current = found.setdefault(line[4:], {})
        elif current is not None and line.startswith("| ") and not line.startswith("| way "):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            current[cells[0]] = cells[1]
    return found


@pytest.mark.postgres
@pytest.mark.mysql
def test_benchmark_runs_and_counts_every_copy(
    pg_server: str, mysql_server: str, tmp_path: Path
) -> None:
    output = tmp_path / "latest.md"
    env = {
        "BENCH_PG_URL": _server(pg_server, "postgresql"),
        "BENCH_MYSQL_URL": _server(mysql_server, "mysql"),
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
    }
    command = [
        sys.executable, str(ROOT / "benchmarks" / "run.py"), "--rows", str(ROWS), "--repeat", "1",
        "--no-peers", "--no-goals", "--copyjob-run-on", "pg-pg", "--no-fixed-cost", "--drop-after",
        "--prefix", f"cjsmoke_{uuid.uuid4().hex[:8]}", "--workdir", str(tmp_path / "work"),
        "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    tables = _tables(output.read_text())
    assert set(tables) == {
        "PostgreSQL → PostgreSQL",
        "PostgreSQL → MariaDB",
        "PostgreSQL → Parquet",
        "SQLite → Parquet",
    }
    copied = f"{ROWS:,}"
    for pairing, ways in tables.items():
        assert ways["copyjob engine (copy_table)"] == copied, pairing
    pg = tables["PostgreSQL → PostgreSQL"]
    assert pg[r"psql COPY binary \| psql COPY FROM STDIN (reference)"] == copied
    assert pg["copyjob run"] == copied
    mariadb = tables["PostgreSQL → MariaDB"]
    assert mariadb[r"psql COPY text \| mariadb LOAD DATA LOCAL INFILE (reference)"] == copied
    assert "failed" not in output.read_text()
