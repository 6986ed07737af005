"""Fault injection for `mode: cdc`: a run killed by SIGKILL at each point of the protocol, then
runs until one succeeds; the destination must equal the source, compared by key and content.

The kill points (fault_runner): before the first change is applied (cdc-apply), just before the
destination's commit (commit), after the commit but before Dagster records the position
(cdc-after-commit), after the position is recorded but before the slot moves (cdc-advance).
Each run is a process of its own that kills itself at its hook: no sleeps, no races.
"""

import itertools
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from cdc_support import logical_server
from conftest import make_dagster_home
from security import private_pg

from copyjob_dagster.defs import cdc
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import load_job
from copyjob_dagster.stores.pgoutput import lsn_value

from .conftest import Recorder
from .fault_runner import Runner

FAMILY = "C1 cdc kill points"
ROWS = 300
POINTS = [("cdc-apply", 1), ("commit", 1), ("cdc-after-commit", 1), ("cdc-advance", 1)]
RUN_SECONDS = 120


@pytest.fixture(scope="module")
def server() -> Iterator[private_pg.PrivatePostgres]:
    yield from logical_server()


def _changes(s: str, round_: int) -> list[str]:
    """Inserts, updates (some that leave a TOASTed value alone), deletes, over transactions."""
    base = 1000 * round_
    return [
        f"INSERT INTO {s}.events (id, payload, amount) "
        f"SELECT {base} + g, 'new ' || g, g FROM generate_series(1, 40) g",
        f"UPDATE {s}.events SET payload = 'r{round_} ' || id, amount = amount + 1 "
        f"WHERE id % 7 = {round_ % 7}",
        f"DELETE FROM {s}.events WHERE id % 11 = {round_ % 11}",
        f"BEGIN; UPDATE {s}.events SET amount = -amount WHERE id % 13 = 0; "
        f"DELETE FROM {s}.events WHERE id = {base} + 1; "
        f"INSERT INTO {s}.events (id, payload) VALUES ({base} + 1, 'again'); COMMIT",
    ]


def _rows(url: str, table: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = f"SELECT id, payload, amount, length(coalesce(big, '')) FROM {table}"
            return [tuple(r) for r in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def invariant(source: list[tuple[Any, ...]], copied: list[tuple[Any, ...]]) -> dict[str, int]:
    """Rows lost, duplicated, different (payload, amount, the TOASTed value's length), extra."""
    wanted = {row[0]: row[1:] for row in source}
    have: dict[Any, Any] = {}
    duplicates = 0
    for row in copied:
        duplicates += row[0] in have
        have[row[0]] = row[1:]
    return {
        "lost": len(wanted.keys() - have.keys()),
        "duplicates": duplicates,
        "mismatches": sum(1 for k in wanted.keys() & have.keys() if wanted[k] != have[k]),
        "extra": len(have.keys() - wanted.keys()),
    }


def _sql(conn: sa.Connection, statement: str) -> None:
    conn.execute(sa.text(statement))


@pytest.mark.parametrize(("point", "nth"), POINTS, ids=[p for p, _ in POINTS])
def test_cdc_killed_then_rerun(
    server: private_pg.PrivatePostgres, tmp_path: Path, point: str, nth: int, record_case: Recorder
) -> None:
    schema = f"cdcfault_{point.replace('-', '_')}"
    admin = sa.create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
    s = schema
    with admin.connect() as conn:
        _sql(conn, f"DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s}")
        _sql(
            conn,
            f"CREATE TABLE {s}.events (id int PRIMARY KEY, payload text, amount int, big text)",
        )
        _sql(
            conn,
            f"INSERT INTO {s}.events SELECT g, 'p' || g, g, CASE WHEN g % 50 = 0 THEN "
            f"(SELECT string_agg(md5(g::text || h::text), '') FROM generate_series(1, 2000) h) "
            f"END FROM generate_series(1, {ROWS}) g",
        )
    destination = f"sqlite:///{tmp_path / 'copy.db'}"
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        yaml.safe_dump(
            {
                "name": s,
                "source": {"url": server.admin_url, "schema": s},
                "destination": {"url": destination},
                "mode": "cdc",
                "tables": [{"name": "events"}],
            }
        )
    )
    home = make_dagster_home(tmp_path / "home")

    job = load_job(job_file)
    assets = [*build_source_specs([job]), *build_copy_assets([job])]

    def run() -> None:
        """A run in this process (a killed run is a process of its own: `killed`)."""
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert dg.materialize(assets, instance=instance, raise_on_error=False).success

    def killed() -> int:
        runner = Runner(job_file, point, nth, 0, home, tmp_path / "errors.txt")
        return runner.wait(RUN_SECONDS)

    counts = None
    try:
        run()
        with admin.connect() as conn:
            for statement in _changes(s, 1):
                _sql(conn, statement)
        assert killed() == -signal.SIGKILL, (tmp_path / "errors.txt").read_text()[-2000:]
        with admin.connect() as conn:
            for statement in _changes(s, 2):
                _sql(conn, statement)
        run()  # the rerun
        with dg.DagsterInstance.from_config(str(home)) as instance:
            events = instance.fetch_materializations(dg.AssetKey([s, "events"]), limit=10).records
            positions = [
                lsn_value(str(e.asset_materialization.metadata[cdc.POSITION].value))
                for e in reversed(events)
            ]
        counts = invariant(_rows(server.admin_url, f"{s}.events"), _rows(destination, "events"))
        counts["regressions"] = sum(b < a for a, b in itertools.pairwise(positions))
    finally:
        record_case(FAMILY, point, counts)
        with admin.connect() as conn:
            _sql(
                conn,
                f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                f"WHERE slot_name LIKE 'copyjob_{s}%'",
            )
            _sql(conn, f"DROP PUBLICATION IF EXISTS copyjob_{s}_events")
            _sql(conn, f"DROP SCHEMA {s} CASCADE")
        admin.dispose()
    assert counts is not None and not any(counts.values()), counts
