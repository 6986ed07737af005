"""The copy job files and the Dagster instance that copyjob's two ways run with.

Per pairing, four jobs copy the data set, its tenth, its hundredth and its first row into the
destination's `orders` (and where reading is the slow end, a fifth copies the data set in
parallel parts); `bench_incr` is an incremental PostgreSQL copy of the tenth, and
`bench_parallel` copies the eight parts in one job.
"""

import shutil
from pathlib import Path

import yaml
from dataset import slices
from settings import DESTINATION_TABLE, PARALLEL_TABLES, SOURCE_TABLE, Settings
from ways import PAIRINGS, SPLIT_PAIRINGS, SPLIT_PARTS, job_name

INCREMENTAL_JOB = "bench_incr"
INCREMENTAL_TABLE = "orders_incr"
PARALLEL_JOB = "bench_parallel"


def write_jobs(settings: Settings) -> None:
    folder = settings.jobs_dir
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pg_source = {"url": settings.pg_sqlalchemy(settings.pg_source_db), "name": "bench_pg"}
    pg_destination = {"url": settings.pg_sqlalchemy(settings.pg_destination_db)}
    stores = {
        "pg-pg": (pg_source, pg_destination),
        "pg-mariadb": (pg_source, {"url": settings.my_sqlalchemy()}),
        "pg-parquet": (pg_source, {"url": str(settings.lake)}),
        "sqlite-parquet": (
            {"url": settings.sqlite_sqlalchemy(), "name": "bench_sqlite"},
            {"url": str(settings.lake)},
        ),
        "pg-sqlite": (pg_source, {"url": f"sqlite:///{settings.sqlite_destination}"}),
    }
    for pairing in PAIRINGS:
        source, destination = stores[pairing]
        for variant, table in (
            ("", SOURCE_TABLE),
            ("small", "orders_small"),
            ("tiny", "orders_tiny"),
            ("one", "orders_one"),
        ):
            _write(folder, job_name(pairing, variant), source, destination,
                   [{"name": table, "to": DESTINATION_TABLE}])  # fmt: skip
        if pairing in SPLIT_PAIRINGS:
            split = {"parts": SPLIT_PARTS, "column": "id"}  # the source table has no key
            _write(folder, job_name(pairing, "split"), source, destination,
                   [{"name": SOURCE_TABLE, "to": DESTINATION_TABLE, "split": split}])  # fmt: skip
    _write(
        folder,
        INCREMENTAL_JOB,
        pg_source,
        pg_destination,
        [{"name": "orders_small", "to": INCREMENTAL_TABLE, "incremental_column": "id"}],
        mode="incremental",
    )
    parts = [name for name in slices(settings) if name.startswith("orders_p")]
    assert len(parts) == PARALLEL_TABLES
    _write(folder, PARALLEL_JOB, pg_source, pg_destination, [{"name": p} for p in parts])


def _write(
    folder: Path, name: str, source: dict, destination: dict, tables: list[dict], mode: str = "full"
) -> None:
    """Each job in a folder of its own: copyjob refuses two jobs of one folder that write the
    same destination table, and these do, one at a time."""
    job = {"name": name, "source": source, "destination": destination, "mode": mode}
    (folder / name).mkdir()
    text = yaml.safe_dump({**job, "tables": tables}, sort_keys=False)
    (folder / name / f"{name}.yaml").write_text(text)


def fresh_dagster_home(settings: Settings) -> None:
    """An instance of its own. Its storage is made by the first run, before that run starts
    its step processes; the benchmark never starts two runs at once."""
    home = settings.dagster_home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
