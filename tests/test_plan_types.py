"""`copyjob plan` on a PostgreSQL → MariaDB copy: a `timestamptz` column, stored by MariaDB as
DATETIME in UTC, is no schema change; a real one is named in the databases' own words."""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from conftest import PG_URL

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table, plan_table

pytestmark = [pytest.mark.postgres, pytest.mark.mysql]


@pytest.fixture
def job(pg_schema: str, mysql_url: str) -> Iterator[CopyJob]:
    engine = sa.create_engine(PG_URL)
    with engine.begin() as db:
        db.execute(sa.text(f"CREATE TABLE {pg_schema}.events (id bigint PRIMARY KEY, "
                           f"amount integer, updated_at timestamptz NOT NULL)"))  # fmt: skip
        db.execute(sa.text(f"INSERT INTO {pg_schema}.events SELECT n, n, "
                           f"timestamptz '2026-01-01 00:00+00' + n * interval '1 s' "
                           f"FROM generate_series(1, 20) AS n"))  # fmt: skip
    engine.dispose()
    yield CopyJob.model_validate(
        {
            "name": "typed",
            "source": {"url": PG_URL, "schema": pg_schema},
            "destination": {"url": mysql_url},
            "mode": "incremental",
            "tables": [{"name": "events", "incremental_column": "updated_at"}],
        }
    )


def test_a_timestamptz_copied_to_mariadb_is_no_schema_change(job: CopyJob, pg_schema: str) -> None:
    table = job.tables[0]
    first = copy_table(job, table, None)
    assert first.rows_written == 20
    planned = plan_table(job, table, first.watermark)
    assert not planned.schema, planned.schema
    assert planned.problems == []

    engine = sa.create_engine(PG_URL)
    with engine.begin() as db:
        db.execute(sa.text(f"ALTER TABLE {pg_schema}.events ALTER COLUMN amount TYPE bigint"))
    engine.dispose()
    (retyped,) = plan_table(job, table, first.watermark).schema.retyped
    assert (retyped.name, retyped.destination_type, retyped.source_type) == (
        "amount",
        "INTEGER",
        "BIGINT",
    )
