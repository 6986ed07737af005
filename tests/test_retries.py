"""Retries: transient store errors are retried under the job's policy, a user's mistake is not.

The classification is tested against the real drivers (a refused connection, a busy SQLite
file, a missing table); the policy by materializing an asset whose copy fails as those do.
"""

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc_dbapi
import dagster as dg
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs import assets
from copyjob_dagster.engine import rows
from copyjob_dagster.errors import CopyJobError, SchemaError, SourceError
from copyjob_dagster.stores import open_source, pgadbc
from copyjob_dagster.stores.open_transactions import COPYJOB_APPLICATION
from copyjob_dagster.stores.transient import is_transient

CLOSED_PORT = 1


def _source_error(url: str, table: str = "orders") -> CopyJobError:
    source = open_source(CopyJob.model_validate(_job_config(url)).source)
    try:
        with pytest.raises(CopyJobError) as raised:
            source.describe(table)
    finally:
        source.close()
    return raised.value


def _job_config(url: str, **settings: Any) -> dict[str, Any]:
    return {
        "name": "retried",
        "source": {"url": url},
        "destination": {"url": "lake"},
        "tables": [{"name": "orders"}],
        **settings,
    }


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://copyjob@127.0.0.1:{CLOSED_PORT}/db",
        f"mysql+pymysql://copyjob@127.0.0.1:{CLOSED_PORT}/db",
    ],
    ids=["postgres", "mysql"],
)
def test_a_refused_connection_is_transient(url: str) -> None:
    error = _source_error(url)
    assert isinstance(error, SourceError) and error.transient


def test_a_busy_sqlite_database_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "busy.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(sa.exc.OperationalError) as raised, engine.connect() as conn:
            conn.execute(sa.text("SELECT * FROM t"))
        assert is_transient(raised.value)
    finally:
        engine.dispose()
        holder.close()


def test_a_native_read_whose_session_was_terminated_is_transient(pg_server: str) -> None:
    """ADBC's driver words a session ended by the server (`pg_terminate_backend`, a shutdown)
    as a FATAL without SQLSTATE; psycopg gives it 57P01, which is retried: so is this."""
    url = sa.engine.make_url(pg_server).set(drivername="postgresql")
    native = adbc_dbapi.connect(url.render_as_string(hide_password=False))
    try:
        cursor = native.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
        engine = sa.create_engine(pg_server, poolclass=sa.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        engine.dispose()
        with pytest.raises(adbc_driver_manager.Error) as raised:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        assert "terminating connection" in str(raised.value)
        assert is_transient(raised.value)
    finally:
        with contextlib.suppress(adbc_driver_manager.Error):
            native.close()


def test_a_missing_table_or_wrong_login_is_not_transient(pg_server: str, tmp_path: Path) -> None:
    path = tmp_path / "shop.sqlite"
    sqlite3.connect(path).close()
    assert not _source_error(f"sqlite:///{path}", "nowhere").transient
    wrong_login = sa.engine.make_url(pg_server).set(username="no_such_copyjob_role", password=None)
    assert not _source_error(wrong_login.render_as_string(hide_password=False)).transient


class _Flaky:
    """Stands in for `copy_table`: raises the given errors in turn, then copies for real."""

    def __init__(self, real: Callable[..., Any], *errors: CopyJobError) -> None:
        self.real = real
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.real(*args, **kwargs)


def _materialize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flaky: _Flaky) -> Any:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO orders VALUES (1)")
    job = CopyJob.model_validate(
        _job_config(
            f"sqlite:///{path}",
            destination={"url": str(tmp_path / "lake")},
            retries={"max_retries": 2, "delay_seconds": 0, "backoff": "constant"},
        )
    )
    monkeypatch.setattr(assets, "copy_table", flaky)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*assets.build_source_specs([job]), *assets.build_copy_assets([job])],
            instance=instance,
            raise_on_error=False,
        )
        retried = [
            r
            for r in instance.get_records_for_run(result.run_id).records
            if r.event_log_entry.user_message.startswith("retrying orders in 0 s")
        ]
        return result, len(retried)


def test_a_transient_error_is_retried_and_the_copy_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped = SourceError("source: reading failed: server closed the connection", transient=True)
    flaky = _Flaky(assets.copy_table, dropped, dropped)
    result, restarts = _materialize(tmp_path, monkeypatch, flaky)
    assert result.success
    assert (flaky.calls, restarts) == (3, 2)


def test_a_users_mistake_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mistake = SchemaError("job 'retried', table 'orders': the source table has no column 'x'")
    flaky = _Flaky(assets.copy_table, mistake)
    result, restarts = _materialize(tmp_path, monkeypatch, flaky)
    assert not result.success
    assert (flaky.calls, restarts) == (1, 0)
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure.description == f"1 of 1 tables failed:\n  orders: {mistake}"


def test_retry_policy_from_the_job_file() -> None:
    job = CopyJob.model_validate(
        _job_config("sqlite:///x.db", retries={"max_retries": 4, "delay_seconds": 2})
    )
    retry = assets.table_retry(job)
    assert (retry.max_retries, retry.delay_seconds, retry.backoff) == (4, 2, "exponential")
    assert [retry.wait(attempt) for attempt in (1, 2, 3)] == [2, 4, 8]
    assert assets.table_retry(CopyJob.model_validate(_job_config("sqlite:///x.db"))) is None


def test_a_connection_lost_mid_copy_is_retried_and_the_rest_copied(
    tmp_path: Path, pg_server: str, pg_schema: str
) -> None:
    """End to end: the PostgreSQL session reading a window is terminated (pg_terminate_backend)
    after its 5th batch, the table is retried under the job's policy, and the retry copies the
    window: the destination equals the source, no row lost nor duplicated, the watermark is
    the source's maximum."""
    engine = sa.create_engine(pg_server, poolclass=sa.NullPool)  # no idle session of ours
    items = sa.Table(
        "items",
        sa.MetaData(schema=pg_schema),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("payload", sa.Text),
        sa.Column("updated", sa.Integer),
    )

    def put(first: int, last: int) -> None:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(items),
                [
                    {"id": i, "payload": f"{i:06d}" * 40, "updated": i // 3}
                    for i in range(first, last)
                ],
            )

    with engine.begin() as conn:
        items.create(conn)
    put(1, 1001)
    job = CopyJob.model_validate(
        {
            "name": "cut",
            "mode": "incremental",
            "batch_rows": 100,
            "source": {"url": pg_server, "schema": pg_schema},
            "destination": {"url": f"sqlite:///{tmp_path / 'copy.sqlite'}"},
            "retries": {"max_retries": 2, "delay_seconds": 0, "backoff": "constant"},
            "tables": [
                {"name": "items", "incremental_column": "updated", "primary_key": ["id"],
                 "write": "merge"}
            ],
        }
    )  # fmt: skip
    cut: list[int] = []
    count = rows.RowCounter.count

    def cut_after_the_fifth_batch(self: Any, batches: Any) -> Any:
        for index, batch in enumerate(count(self, batches), start=1):
            yield batch
            if index == 5 and not cut:  # the first attempt of the second run only
                cut.append(_terminate_reader(engine, pg_schema))

    definitions = [*assets.build_source_specs([job]), *assets.build_copy_assets([job])]
    with dg.instance_for_test() as instance:
        assert dg.materialize(definitions, instance=instance).success  # the first 1,000 rows
        put(1001, 40001)  # 10 MB: the read is still streaming when its session is cut
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(rows.RowCounter, "count", cut_after_the_fifth_batch)
            # The native read asks the driver for batches of this size: small ones, so that
            # the fifth batch comes long before the server has sent the whole window.
            patch.setattr(pgadbc, "BATCH_BYTES", 256 << 10)
            result = dg.materialize(definitions, instance=instance, raise_on_error=False)
        messages = [r.event_log_entry.user_message for r in
                    instance.get_records_for_run(result.run_id).records]  # fmt: skip
        watermark = assets.latest_watermark(instance, dg.AssetKey(["cut", "items"]))
    assert cut, "the reading session was never cut"
    with engine.connect() as conn:
        gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = :p"
        assert conn.execute(sa.text(gone), {"p": cut[0]}).scalar() == 0
    assert result.success, messages
    assert sum(m.startswith("retrying items in 0 s") for m in messages) == 1, messages
    with engine.connect() as conn:
        source = conn.execute(sa.select(items).order_by(items.c.id)).all()
    engine.dispose()
    with sqlite3.connect(tmp_path / "copy.sqlite") as db:
        copied = db.execute("SELECT id, payload, updated FROM items ORDER BY id").fetchall()
    assert [tuple(row) for row in source] == copied  # nothing lost, nothing twice
    assert watermark is not None and int(watermark.text) == 40000 // 3


def _terminate_reader(engine: sa.Engine, schema: str) -> int:
    """Terminate the session reading `schema`'s table (the server ends it as soon as it has
    sent what the socket holds: the copy's next read fails)."""
    reading = sa.text(
        "SELECT pid FROM pg_stat_activity WHERE application_name = :app "
        "AND state <> 'idle' AND query LIKE :q"
    ).bindparams(app=COPYJOB_APPLICATION, q=f"%{schema}%")
    with engine.connect() as conn:
        (pid,) = conn.execute(reading).scalars().all()
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    return pid
