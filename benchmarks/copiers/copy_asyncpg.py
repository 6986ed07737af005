"""asyncpg streaming the source's COPY bytes into the destination's bulk load, untouched."""

import asyncio
import os
import tempfile
import threading
from pathlib import Path

import asyncpg
import pymysql
from settings import DESTINATION_TABLE, SOURCE_TABLE, Settings

from copiers import PG_FOR_MYSQL


def pg_pg(settings: Settings, _: str) -> None:
    asyncio.run(_pg_pg(settings))


async def _pg_pg(settings: Settings) -> None:
    source = await asyncpg.connect(settings.pg_dsn(settings.pg_source_db))
    destination = await asyncpg.connect(settings.pg_dsn(settings.pg_destination_db))
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)

    async def produce() -> None:
        await source.copy_from_query(
            f"SELECT * FROM {SOURCE_TABLE}", output=queue.put, format="binary"
        )
        await queue.put(None)

    async def chunks():
        while (chunk := await queue.get()) is not None:
            yield chunk

    try:
        await asyncio.gather(
            produce(),
            destination.copy_to_table(DESTINATION_TABLE, source=chunks(), format="binary"),
        )
    finally:
        await source.close()
        await destination.close()


def pg_mariadb(settings: Settings, _: str) -> None:
    """COPY text bytes into a FIFO that MariaDB's client reads as a LOAD DATA LOCAL file."""
    with tempfile.TemporaryDirectory() as folder:
        fifo = Path(folder) / "orders.tsv"
        os.mkfifo(fifo)
        failures: list[BaseException] = []
        loader = threading.Thread(target=_load, args=(settings, fifo, failures))
        loader.start()
        try:
            asyncio.run(_copy_text_to(settings, fifo))
        finally:
            loader.join()
        if failures:
            raise failures[0]


async def _copy_text_to(settings: Settings, fifo: Path) -> None:
    source = await asyncpg.connect(settings.pg_dsn(settings.pg_source_db))
    try:
        with open(fifo, "wb") as sink:
            await source.copy_from_query(PG_FOR_MYSQL, output=sink, format="text")
    finally:
        await source.close()


def _load(settings: Settings, fifo: Path, failures: list[BaseException]) -> None:
    try:
        conn = pymysql.connect(
            host=settings.my_host,
            port=settings.my_port,
            user=settings.my_user,
            database=settings.my_db,
            local_infile=True,
        )
        with conn, conn.cursor() as cur:
            cur.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE `{DESTINATION_TABLE}`", (str(fifo),))
            conn.commit()
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread
        failures.append(exc)
        open(fifo, "rb").close()  # let the writer's open() return
