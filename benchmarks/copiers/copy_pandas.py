"""pandas `read_sql` + `to_sql` (or `to_parquet`): the whole table in memory, as most
tutorials write it."""

import pandas as pd
import sqlalchemy as sa
from settings import DESTINATION_TABLE, SOURCE_TABLE, Settings


def _read(url: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        return pd.read_sql_table(SOURCE_TABLE, engine)
    finally:
        engine.dispose()


def _write(frame: pd.DataFrame, url: str) -> None:
    engine = sa.create_engine(url)
    try:
        frame.to_sql(DESTINATION_TABLE, engine, if_exists="append", index=False, chunksize=50_000)
    finally:
        engine.dispose()


def pg_pg(settings: Settings, _: str) -> None:
    frame = _read(settings.pg_sqlalchemy(settings.pg_source_db))
    _write(frame, settings.pg_sqlalchemy(settings.pg_destination_db))


def pg_mariadb(settings: Settings, _: str) -> None:
    frame = _read(settings.pg_sqlalchemy(settings.pg_source_db))
    frame["updated_at"] = frame["updated_at"].dt.tz_convert("UTC").dt.tz_localize(None)
    _write(frame, settings.my_sqlalchemy())


def pg_parquet(settings: Settings, _: str) -> None:
    _read(settings.pg_sqlalchemy(settings.pg_source_db)).to_parquet(settings.parquet_path)


def sqlite_parquet(settings: Settings, _: str) -> None:
    _read(settings.sqlite_sqlalchemy()).to_parquet(settings.parquet_path)
