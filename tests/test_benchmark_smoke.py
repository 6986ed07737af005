"""The speed benchmark (benchmarks/run.py) still runs: 10,000 rows, copyjob's own two ways and
the references that need no peer tools, every way's copy counted and checksummed at its
destination; and the checksum it compares destinations by sees a changed value."""

import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
ROWS = 10_000


def _server(url: str, scheme: str) -> str:
    parsed = sa.engine.make_url(url)
    return f"{scheme}://{parsed.username}@{parsed.host}:{parsed.port}"


def _tables(markdown: str) -> dict[str, dict[str, list[str]]]:
    """Per pairing (### heading), each way's cells after its name."""
    found: dict[str, dict[str, str]] = {}
    current = None
    for line in markdown.splitlines():
        if line.startswith("### "):
            current = found.setdefault(line[4:], {})
        elif current is not None and line.startswith("| ") and not line.startswith("| way "):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            current[cells[0]] = cells[1:]
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
        "--no-peers", "--no-goals", "--copyjob-run-on", "pg-pg", "--drop-after",
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
        "PostgreSQL → SQLite",
    }
    copied = f"{ROWS:,}"
    rows, content, whole_ratio = 1, 2, 7  # cells after the way's name
    for pairing, ways in tables.items():
        engine = ways["copyjob engine (copy_table)"]
        assert (engine[rows], engine[content]) == (copied, "same"), pairing
    pg = tables["PostgreSQL → PostgreSQL"]
    reference = pg[r"psql COPY binary \| psql COPY FROM STDIN (reference)"]
    assert (reference[rows], reference[content]) == (copied, "same")
    run = pg["copyjob run"]
    assert (run[rows], run[content]) == (copied, "same")
    assert run[0] == "1 paired" and run[whole_ratio].endswith("×")  # the whole command's ratio
    mariadb = tables["PostgreSQL → MariaDB"]
    reference = mariadb[r"psql COPY text \| mariadb LOAD DATA LOCAL INFILE (reference)"]
    assert (reference[rows], reference[content]) == (copied, "same")
    text = output.read_text()
    assert "failed" not in text
    # the reference loaded into the table copyjob created (LONGTEXT, not the source's VARCHAR)
    assert "`status` longtext" in text


@pytest.mark.postgres
def test_checksum_is_order_blind_and_sees_a_changed_value(pg_server: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import content
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = (
        "id bigint, customer_id int, amount numeric(12,2), status text, note text, "
        "created_at timestamp, updated_at timestamptz, paid boolean, order_date date, "
        "score float8"
    )
    row = (
        "(i, i * 7, i * 1.25, 'new', CASE WHEN i % 2 = 0 THEN NULL ELSE 'n' || i END, "
        "timestamp '2020-01-01' + i * interval '1.000001 s', "
        "timestamptz '2020-01-01 00:00:00+00' + i * interval '1 s', i % 3 = 0, "
        "date '2020-01-01' + i, i / 7.0)"
    )
    url = sa.engine.make_url(pg_server).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        for name, order in (("a", "i"), ("b", "-i")):
            conn.execute(f"CREATE TEMP TABLE {name} ({columns})")
            conn.execute(f"INSERT INTO {name} SELECT {row[1:-1]} FROM generate_series(1, 50) i "
                         f"ORDER BY {order}")  # fmt: skip
        expected = content.pg(conn, "pg_temp", "a")
        assert expected[0] == 50
        assert content.pg(conn, "pg_temp", "b") == expected  # the same rows in another order
        exported = conn.execute("SELECT * FROM a").fetchall()
        names = [c.split()[0] for c in columns.split(", ")]
        table = pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in exported])
        pq.write_table(table, tmp_path / "a.parquet")
        assert content.parquet([tmp_path / "a.parquet"]) == expected  # Parquet read alike
        conn.execute("UPDATE b SET updated_at = updated_at + interval '1 microsecond' WHERE id = 9")
        assert content.pg(conn, "pg_temp", "b") != expected
        conn.execute("UPDATE b SET updated_at = updated_at - interval '1 microsecond' WHERE id = 9")
        conn.execute("UPDATE b SET note = NULL WHERE id = 9")
        assert content.pg(conn, "pg_temp", "b") != expected
