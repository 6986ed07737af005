"""Folded changes written to a PostgreSQL table set-wise, through temporary staging tables.

The deleted keys go by one DELETE. The upserted rows, when they are few next to the table's rows
(at most the share of each page that `UPDATED_FILLFACTOR` leaves free), go by one `INSERT ...
SELECT ... ON CONFLICT (key) DO UPDATE`: an update then rewrites its row in place, and on a
table laid out with room on its pages (`PostgresStore.load_for_updates`) the new version
stays on its page with no new index entry (a HOT update), where deleting the row and inserting
it again would add an index entry and touch a page at the table's end. When they are many (a
page would not hold their new versions, and ON CONFLICT's per-row work costs more than a
plain insert), their keys are deleted with the others and the rows copied in by COPY.

The staging tables are temporary (`pg_temp`: no WAL for their rows), copied into with the
store's COPY, and dropped at the end of the flush, or with the transaction (`ON COMMIT DROP`;
a failed one rolls their creation back): a pooled connection, which a shared engine hands to
the next table (`engines`), carries none of them. Creating them needs the database's TEMP
privilege (PUBLIC has it unless revoked). Their columns are the target's own (`CREATE TABLE
... AS SELECT ... WITH NO DATA`), so every value is cast by COPY exactly as it would be into
the target.
"""

from typing import TYPE_CHECKING

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from copyjob_dagster.stores.sql import SqlStore

# Percent of each page filled by a table's first copy when its rows are then updated by key
# (`mode: cdc`): the room left takes updated rows' new versions on their own page.
UPDATED_FILLFACTOR = 90
TEMPORARY = "pg_temp"
_ROWS = sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:table)")


def write(
    store: "SqlStore",
    conn: Connection,
    target: sa.Table,
    key: tuple[str, ...],
    deleted: pa.Table,
    upserted: pa.Table,
) -> None:
    """Delete the keys of `deleted`, then write `upserted` (one row per key) in place of the
    rows with their keys (see the module's docstring for the two ways)."""
    if upserted.num_rows and upserted.num_rows <= _room(store, conn, target):
        delete_keys(store, conn, target, key, deleted)
        upsert_rows(store, conn, target, key, upserted)
        return
    gone = pa.concat_tables([deleted, upserted.select(list(key)).cast(deleted.schema)])
    delete_keys(store, conn, target, key, gone)
    store.write_batches(conn, target, upserted.to_batches())


def _room(store: "SqlStore", conn: Connection, target: sa.Table) -> float:
    """How many rows' new versions the table's pages have room for (0 when it was never
    analyzed: its size is then unknown)."""
    rows = conn.execute(_ROWS, {"table": store.qualified(target.name)}).scalar()
    return max(rows or 0, 0) * (100 - UPDATED_FILLFACTOR) / 100


def delete_keys(
    store: "SqlStore", conn: Connection, target: sa.Table, key: tuple[str, ...], keys: pa.Table
) -> None:
    """Delete the rows whose key is among `keys`. A one-column key by `= ANY(ARRAY(SELECT
    ...))`, which the planner serves with the key's index (a join often scanned the whole
    table); a wider key by a join, with the staged keys analyzed first."""
    if not keys.num_rows:
        return
    stage = _staged(store, conn, target, "gone", key, keys)
    staged = f"{TEMPORARY}.{store.quote(stage.name)}"
    if len(key) == 1:
        column = store.quote(key[0])
        conn.exec_driver_sql(
            f"DELETE FROM {store.qualified(target.name)} WHERE {column} = "
            f"ANY(ARRAY(SELECT {column} FROM {staged}))"
        )
    else:
        conn.exec_driver_sql(f"ANALYZE {staged}")
        conn.execute(sa.delete(target).where(*(target.c[k] == stage.c[k] for k in key)))
    conn.exec_driver_sql(f"DROP TABLE {staged}")


def upsert_rows(
    store: "SqlStore", conn: Connection, target: sa.Table, key: tuple[str, ...], rows: pa.Table
) -> None:
    """Insert `rows` (one per key), each in place of the row with its key where there is one."""
    if not rows.num_rows:
        return
    stage = _staged(store, conn, target, "upsert", tuple(rows.column_names), rows)
    names = ", ".join(store.quote(n) for n in rows.column_names)
    values = [n for n in rows.column_names if n not in key]
    action = (
        "UPDATE SET " + ", ".join(f"{store.quote(n)} = EXCLUDED.{store.quote(n)}" for n in values)
        if values
        else "NOTHING"
    )
    staged = f"{TEMPORARY}.{store.quote(stage.name)}"
    conn.exec_driver_sql(
        f"INSERT INTO {store.qualified(target.name)} ({names}) SELECT {names} FROM {staged} "
        f"ON CONFLICT ({', '.join(store.quote(k) for k in key)}) DO {action}"
    )
    conn.exec_driver_sql(f"DROP TABLE {staged}")


def _staged(
    store: "SqlStore",
    conn: Connection,
    target: sa.Table,
    purpose: str,
    columns: tuple[str, ...],
    rows: pa.Table,
) -> sa.Table:
    """A temporary table with `target`'s `columns`, holding `rows`."""
    name = store.staging_name(target.name, purpose)
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {store.quote(name)} ON COMMIT DROP AS SELECT "
        f"{', '.join(store.quote(c) for c in columns)} FROM {store.qualified(target.name)} "
        f"WITH NO DATA"
    )
    stage = sa.Table(name, sa.MetaData(), *(sa.Column(c, target.c[c].type) for c in columns),
                     schema=TEMPORARY)  # fmt: skip
    store.write_batches(conn, stage, rows.select(list(columns)).to_batches())
    return stage
