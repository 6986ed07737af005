"""T16: distinct PostgreSQL keys stay distinct in MariaDB ('a' and 'A', 'x' and 'x ').

MariaDB's default collations ignore case and trailing spaces, and even its utf8mb4_bin pads
with spaces: a key column in one of them would merge two source rows into one, silently in a
merge. The copy's key columns use a binary NO PAD collation, and a merge into a table whose key
column would merge keys stops with a message.
"""

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import copy_table
from copyjob_dagster.engine.watermark import Watermark
from copyjob_dagster.errors import DestinationError

KEYS = ["a", "A", "x", "x ", "x  ", "é", "É", "e"]


@pytest.fixture
def source(pg_server: str, pg_schema: str) -> dict[str, str]:
    engine = sa.create_engine(pg_server)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"CREATE TABLE {pg_schema}.words (k text PRIMARY KEY, n int, updated_at int)")
        )
        conn.execute(
            sa.text(f"INSERT INTO {pg_schema}.words VALUES (:k, :n, :n)"),
            [{"k": k, "n": n} for n, k in enumerate(KEYS)],
        )
    engine.dispose()
    return {"url": pg_server, "schema": pg_schema}


def _job(source: dict[str, str], mysql_url: str, **table: object) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "keys",
            "mode": "incremental" if table else "full",
            "source": source,
            "destination": {"url": mysql_url},
            "tables": [{"name": "words", **table}],
        }
    )


def _copied(mysql_url: str) -> list[tuple[str, int]]:
    engine = sa.create_engine(mysql_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT k, n FROM words ORDER BY n")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_a_full_copy_keeps_every_key(source: dict[str, str], mysql_url: str) -> None:
    job = _job(source, mysql_url)
    result = copy_table(job, job.tables[0])
    assert result.rows_written == len(KEYS)
    assert _copied(mysql_url) == [(k, n) for n, k in enumerate(KEYS)]


def test_a_merge_keeps_every_key(source: dict[str, str], mysql_url: str) -> None:
    job = _job(source, mysql_url, incremental_column="updated_at", write="merge")
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    with dg.instance_for_test() as instance:
        assert dg.materialize(assets, instance=instance).success  # the initial load
        engine = sa.create_engine(source["url"])
        with engine.begin() as conn:  # every row again, above the watermark
            conn.execute(sa.text(f"UPDATE {source['schema']}.words SET updated_at = n + 100"))
        engine.dispose()
        assert dg.materialize(assets, instance=instance).success  # merged by key
        event = instance.get_latest_materialization_event(dg.AssetKey(["keys", "words"]))
        assert event.asset_materialization.metadata["copyjob/rows_written"].value == len(KEYS)
    assert _copied(mysql_url) == [(k, n) for n, k in enumerate(KEYS)]


def test_a_merge_into_a_padding_key_column_stops(
    source: dict[str, str], mysql_url: str, tmp_path: Path
) -> None:
    """A destination table whose key column pads or folds case (made by hand, or by an older
    copyjob with utf8mb4_bin) is refused before merging."""
    engine = sa.create_engine(mysql_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE words (k VARCHAR(255) COLLATE utf8mb4_bin PRIMARY KEY, n INT, "
                "updated_at INT)"
            )
        )
    engine.dispose()
    job = _job(source, mysql_url, incremental_column="updated_at", write="merge")
    with pytest.raises(DestinationError, match=r"key column\(s\) 'k' \(utf8mb4_bin\)") as refused:
        copy_table(job, job.tables[0], Watermark.of("integer", 0, 0, ""))
    assert "Run a full refresh" in str(refused.value)
    assert _copied(mysql_url) == []
