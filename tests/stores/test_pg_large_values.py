"""PostgreSQL text values of many megabytes, read through COPY's CSV, reach Parquet and MariaDB
whole, with memory that follows the largest row."""

import hashlib
import resource
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table

MB = 1 << 20
# Quotes, commas and newlines in the values: the CSV parser must keep each whole.
PIECE = 'ab"c,\nd'
SIZES = {1: 10, 2: 3 * MB, 3: 20, 4: 50 * MB, 5: 0}


@pytest.fixture
def source(pg_server: str, pg_schema: str) -> dict[int, str]:
    """`big(id, body)`: values of 10 bytes, 3 MB, 20 bytes, 50 MB and empty, made by the
    server; their MD5 by id."""
    engine = sa.create_engine(pg_server)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {pg_schema}.big (id int PRIMARY KEY, body text)")
        for key, size in SIZES.items():
            conn.execute(
                sa.text(
                    f"INSERT INTO {pg_schema}.big VALUES "
                    f"(:id, left(repeat(:piece, :size / length(:piece) + 1), :size))"
                ),
                {"id": key, "piece": PIECE, "size": size},
            )
        digests = dict(
            conn.exec_driver_sql(f"SELECT id, md5(body) FROM {pg_schema}.big").fetchall()
        )
    engine.dispose()
    return digests


def _job(pg_server: str, pg_schema: str, destination: str) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "large_values",
            "source": {"url": pg_server, "schema": pg_schema},
            "destination": {"url": destination},
            "tables": [{"name": "big", "primary_key": ["id"]}],
        }
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_values_of_50_mb_reach_parquet_whole(
    pg_server: str, pg_schema: str, source: dict[int, str], tmp_path: Path
) -> None:
    before = _peak_rss_mb()
    job = _job(pg_server, pg_schema, str(tmp_path / "lake"))

    assert copy_table(job, job.tables[0]).rows_written == len(SIZES)
    # Copies of the largest row, not of the table: libpq's two, the chunk, Arrow's parse and
    # array, then the Parquet writer's dictionary attempt, page and compressed page.
    assert _peak_rss_mb() - before < 10 * SIZES[4] / MB

    copied = pq.read_table(tmp_path / "lake" / "big.parquet").to_pydict()
    digests = {
        key: hashlib.md5(body.encode()).hexdigest()  # noqa: S324 - a checksum
        for key, body in zip(copied["id"], copied["body"], strict=True)
    }
    assert digests == source


def test_values_of_50_mb_reach_mariadb_whole(
    pg_server: str, pg_schema: str, source: dict[int, str], mysql_url: str
) -> None:
    """LOAD DATA streams a row past max_allowed_packet (16 MB on the test server): no limit."""
    job = _job(pg_server, pg_schema, mysql_url)
    assert copy_table(job, job.tables[0]).rows_written == len(SIZES)
    engine = sa.create_engine(mysql_url)
    with engine.connect() as conn:
        copied = dict(conn.exec_driver_sql("SELECT id, md5(body) FROM big").fetchall())
    engine.dispose()
    assert copied == source
