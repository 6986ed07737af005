"""dlt 1.31: its sql_table source (pyarrow backend) into a pipeline, as its docs show.

dlt writes into a dataset of its own (a schema, a database, a folder) with its `_dlt_*`
columns and state tables beside the data; the row count is read there."""

import dlt
from dlt.sources.sql_database import sql_table
from settings import SOURCE_TABLE, Settings


def _run(source_url: str, destination, settings: Settings, **run_options) -> None:
    table = sql_table(credentials=source_url, table=SOURCE_TABLE, backend="pyarrow")
    pipeline = dlt.pipeline(
        pipeline_name=f"{settings.prefix}_dlt",
        destination=destination,
        dataset_name=f"{settings.prefix}_dlt",
        pipelines_dir=f"{settings.workdir}/dlt_pipelines",
    )
    info = pipeline.run(table, write_disposition="replace", **run_options)
    info.raise_on_failed_jobs()


def pg_pg(settings: Settings, _: str) -> None:
    # dlt's credentials demand a password; the benchmark's server trusts local connections.
    url = settings.pg_dsn(settings.pg_destination_db).replace("@", ":unused@", 1)
    destination = dlt.destinations.postgres(url)
    _run(settings.pg_sqlalchemy(settings.pg_source_db), destination, settings)


def pg_mariadb(settings: Settings, _: str) -> None:
    destination = dlt.destinations.sqlalchemy(settings.my_sqlalchemy())
    _run(settings.pg_sqlalchemy(settings.pg_source_db), destination, settings)


def pg_parquet(settings: Settings, _: str) -> None:
    destination = dlt.destinations.filesystem(f"file://{settings.lake}/dlt")
    _run(
        settings.pg_sqlalchemy(settings.pg_source_db),
        destination,
        settings,
        loader_file_format="parquet",
    )


def sqlite_parquet(settings: Settings, _: str) -> None:
    destination = dlt.destinations.filesystem(f"file://{settings.lake}/dlt")
    _run(settings.sqlite_sqlalchemy(), destination, settings, loader_file_format="parquet")
