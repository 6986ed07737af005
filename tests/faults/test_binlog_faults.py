"""Fault injection for `mode: cdc` from MariaDB's binlog: a run killed by SIGKILL at each point
of the protocol, then a run that succeeds; the destination must equal the source, compared by
key and content, and the recorded positions never go back.

The kill points (fault_runner): as the first change is applied (cdc-apply), just before the
destination's commit (commit), after the commit but before Dagster records the position
(cdc-after-commit). MariaDB has no slot to move, so there is no fourth point. Each run is a
process of its own that kills itself at its hook: no sleeps, no races.
"""

import itertools
import signal
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pymysql
import pytest
import yaml
from binlog_support import PrivateMariaDB, binlog_server
from conftest import make_dagster_home

from copyjob_dagster.defs import cdc
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.engine import load_job
from copyjob_dagster.stores.binlog import parse_position

from .conftest import Recorder
from .fault_runner import Runner
from .test_cdc_faults import _rows, invariant

FAMILY = "C1 cdc kill points"
ROWS = 300
POINTS = [("cdc-apply", 1), ("commit", 1), ("cdc-after-commit", 1)]
RUN_SECONDS = 120


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateMariaDB]:
    yield from binlog_server()


def _changes(round_: int) -> list[str]:
    """Inserts, updates, deletes, over transactions (one of several statements)."""
    base = 1000 * round_
    return [
        f"INSERT INTO events (id, payload, amount) "
        f"SELECT {base} + seq, concat('new ', seq), seq FROM seq_1_to_40",
        f"UPDATE events SET payload = concat('r{round_} ', id), amount = amount + 1 "
        f"WHERE id % 7 = {round_ % 7}",
        f"DELETE FROM events WHERE id % 11 = {round_ % 11}",
        "BEGIN",
        "UPDATE events SET amount = -amount WHERE id % 13 = 0",
        f"DELETE FROM events WHERE id = {base} + 1",
        f"INSERT INTO events (id, payload) VALUES ({base} + 1, 'again')",
        "COMMIT",
    ]


@pytest.mark.parametrize(("point", "nth"), POINTS, ids=[p for p, _ in POINTS])
def test_binlog_cdc_killed_then_rerun(
    server: PrivateMariaDB, tmp_path: Path, point: str, nth: int, record_case: Recorder
) -> None:
    database = f"binlogfault_{point.replace('-', '_')}"
    server.sql(
        f"DROP DATABASE IF EXISTS {database}",
        f"CREATE DATABASE {database}",
        f"CREATE TABLE {database}.events (id int PRIMARY KEY, payload text, amount int, "
        f"big longtext)",
        f"INSERT INTO {database}.events SELECT seq, concat('p', seq), seq, IF(seq % 50 = 0, "
        f"repeat(md5(seq), 2000), NULL) FROM {database}.seq_1_to_{ROWS}",
    )
    source = server.url(database)
    destination = f"sqlite:///{tmp_path / 'copy.db'}"
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        yaml.safe_dump(
            {
                "name": database,
                "source": {"url": source},
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
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert dg.materialize(assets, instance=instance, raise_on_error=False).success

    def change(round_: int) -> None:
        connection = pymysql.connect(
            unix_socket=str(server.socket), user="root", database=database, autocommit=True
        )
        try:
            with connection.cursor() as cursor:
                for statement in _changes(round_):
                    cursor.execute(statement)
        finally:
            connection.close()

    counts = None
    try:
        run()
        change(1)
        killed = Runner(job_file, point, nth, 0, home, tmp_path / "errors.txt").wait(RUN_SECONDS)
        assert killed == -signal.SIGKILL, (tmp_path / "errors.txt").read_text()[-2000:]
        change(2)
        run()  # the rerun
        with dg.DagsterInstance.from_config(str(home)) as instance:
            events = instance.fetch_materializations(
                dg.AssetKey([database, "events"]), limit=10
            ).records
            positions = [
                parse_position(str(e.asset_materialization.metadata[cdc.POSITION].value))
                for e in reversed(events)
            ]
        counts = invariant(_rows(source, "events"), _rows(destination, "events"))
        counts["regressions"] = sum(b < a for a, b in itertools.pairwise(positions))
    finally:
        record_case(FAMILY, f"binlog {point}", counts)
        server.sql(f"DROP DATABASE {database}")
    assert counts is not None and not any(counts.values()), counts
