"""The best Arrow pipelines found in Python: ADBC read -> ADBC ingest (PostgreSQL), connectorx
stream -> pyarrow ParquetWriter (Parquet).

Traps they have to step around: ADBC reads PostgreSQL `numeric` as strings (cast back to a
decimal before the binary COPY), and connectorx's stream widens `int4` to `int64`.
"""

import adbc_driver_postgresql.dbapi as adbc
import connectorx as cx
import pyarrow as pa
import pyarrow.parquet as pq
from settings import DESTINATION_TABLE, SOURCE_TABLE, Settings

BATCH_ROWS = 100_000


def pg_pg(settings: Settings, _: str) -> None:
    with (
        adbc.connect(settings.pg_dsn(settings.pg_source_db)) as source,
        adbc.connect(settings.pg_dsn(settings.pg_destination_db)) as destination,
    ):
        with source.cursor() as read:
            read.execute(f"SELECT * FROM {SOURCE_TABLE}")
            reader = read.fetch_record_batch()
            schema = pa.schema(
                f.with_type(pa.decimal128(12, 2)) if f.name == "amount" else f
                for f in reader.schema
            )
            batches = pa.RecordBatchReader.from_batches(
                schema, (batch.cast(schema) for batch in reader)
            )
            with destination.cursor() as write:
                write.adbc_ingest(DESTINATION_TABLE, batches, mode="append")
        destination.commit()


def pg_parquet(settings: Settings, _: str) -> None:
    _stream_to_parquet(settings.pg_dsn(settings.pg_source_db), settings)


def sqlite_parquet(settings: Settings, _: str) -> None:
    _stream_to_parquet(f"sqlite://{settings.sqlite_path}", settings)


def _stream_to_parquet(url: str, settings: Settings) -> None:
    reader = cx.read_sql(
        url, f"SELECT * FROM {SOURCE_TABLE}", return_type="arrow_stream", batch_size=BATCH_ROWS
    )
    with pq.ParquetWriter(settings.parquet_path, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
