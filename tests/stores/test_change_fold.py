"""Changes applied by key, set-wise, against a model that applies them one by one: random
sequences of inserts, updates (some leaving an unchanged TOASTed value unsent), deletes, key
changes and truncates, given one change at a time (`KeyedChanges.change`, a change source's
row interface) and as column batches (`KeyedChanges.changes`), flushed every few changes."""

import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from copyjob_dagster.config import StoreConfig
from copyjob_dagster.stores import change_apply, open_destination, pg_apply
from copyjob_dagster.stores.change_fold import UNSENT, ChangeBatch, aligned, concatenated, fold

SCHEMA = pa.schema(
    [("id", pa.int64()), ("region", pa.string()), ("name", pa.string()), ("big", pa.string())]
)
KEY = ("id",)
WIDE_KEY = ("id", "region")  # a key of two columns (`region` is always "r")
Change = tuple[str, dict[str, Any], tuple | None, int]


def _sequence(seed: int, start: dict[int, dict[str, Any]]) -> list[Change | str]:
    """Changes as a source would send them from the rows `start`: `big` is left unsent by
    some updates that keep it (as pgoutput does for an unchanged TOASTed value)."""
    rng, rows, changes = random.Random(seed), {k: dict(v) for k, v in start.items()}, []
    for position in range(1, 200):
        roll, keys = rng.random(), sorted(rows)
        if roll < 0.02:
            changes.append("truncate")
            rows.clear()
        elif roll < 0.3 or not keys:
            key = rng.randint(1, 40)
            if key in rows:
                continue
            rows[key] = {"id": key, "region": "r", "name": f"n{position}", "big": f"b{position}"}
            changes.append(("insert", dict(rows[key]), None, position))
        elif roll < 0.75:
            key = rng.choice(keys)
            rows[key]["name"] = f"u{position}"
            sent = dict(rows[key])
            if rng.random() < 0.5:
                sent["big"] = UNSENT
            else:
                rows[key]["big"] = sent["big"] = f"b{position}"
            changes.append(("update", sent, None, position))
        elif roll < 0.85:
            key, new = rng.choice(keys), rng.randint(41, 60)
            if new in rows:
                continue
            rows[new] = {**rows.pop(key), "id": new}
            changes.append(("update", dict(rows[new]), (key, "r"), position))
        else:
            key = rng.choice(keys)
            del rows[key]
            gone = {"id": key, "region": "r", "name": None, "big": None}
            changes.append(("delete", gone, None, position))
    return changes


def _model(start: dict[int, dict[str, Any]], changes: list[Change | str]) -> list[tuple]:
    rows = {k: dict(v) for k, v in start.items()}
    for change in changes:
        if change == "truncate":
            rows.clear()
            continue
        operation, row, old_key, _ = change
        if old_key is not None:
            rows.pop(old_key[0], None)
        if operation == "delete":
            rows.pop(row["id"], None)
        else:
            kept = rows.get(row["id"], {})
            rows[row["id"]] = {c: kept.get(c) if v is UNSENT else v for c, v in row.items()}
    return sorted((r["id"], r["name"], r["big"]) for r in rows.values())


def _batch(changes: list[Change], key: tuple = KEY) -> ChangeBatch:
    """The changes as columns, built by hand (not by `batch_of_rows`)."""
    big = [row["big"] for _, row, _, _ in changes]
    unsent = np.array([value is UNSENT for value in big])
    rows = pa.table(
        {
            "id": [row["id"] for _, row, _, _ in changes],
            "region": [row["region"] for _, row, _, _ in changes],
            "name": [row["name"] for _, row, _, _ in changes],
            "big": [None if value is UNSENT else value for value in big],
        },
        schema=SCHEMA,
    )
    old = [old_key if old_key else (None, None) for _, _, old_key, _ in changes]
    old_keys = pa.table(
        {k: pa.array([o[i] for o in old], SCHEMA.field(k).type) for i, k in enumerate(key)}
    )
    return ChangeBatch(
        rows,
        pa.array([c[0] for c in changes]),
        pa.array([c[3] for c in changes], pa.int64()),
        {"big": unsent} if unsent.any() else {},
        old_keys if any(o[0] is not None for o in old) else None,
    )


@pytest.mark.parametrize("entry", ["change", "changes"])
@pytest.mark.parametrize("seed", range(6))
def test_set_wise_apply_matches_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, seed: int
) -> None:
    config = StoreConfig(url=f"sqlite:///{tmp_path / 'dst.db'}")
    _apply_and_compare(config, "items", monkeypatch, entry, seed, KEY if seed else WIDE_KEY)


@pytest.mark.parametrize("room", [0, 10**9], ids=["copied in", "upserted in place"])
@pytest.mark.parametrize("key", [KEY, WIDE_KEY], ids=["one-column key", "two-column key"])
@pytest.mark.parametrize("seed", range(2))
def test_set_wise_apply_into_postgresql(
    pg_server: str,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    key: tuple,
    room: int,
) -> None:
    """PostgreSQL deletes through a temporary table of the keys, and writes the upserted rows
    either way `pg_apply.write` picks by the table's room (both taken here, whatever the size)."""
    monkeypatch.setattr(pg_apply, "_room", lambda *_: room)
    config = StoreConfig(url=pg_server, schema=pg_schema)
    _apply_and_compare(config, f"{pg_schema}.items", monkeypatch, "changes", seed, key)


def _apply_and_compare(
    config: StoreConfig,
    table: str,
    monkeypatch: pytest.MonkeyPatch,
    entry: str,
    seed: int,
    key: tuple,
) -> None:
    monkeypatch.setattr(change_apply, "FLUSH_ROWS", 7 + seed * 10)
    start = {k: {"id": k, "region": "r", "name": f"s{k}", "big": f"sb{k}"} for k in range(1, 21)}
    store = open_destination(config)
    first = pa.RecordBatch.from_pylist(list(start.values()), SCHEMA)
    store.replace("items", SCHEMA, key, [first])
    changes = _sequence(seed, start)
    with store.applying_changes("items", SCHEMA, key, 0) as sink:
        pending: list[Change] = []
        for change in [*changes, "end"]:
            if isinstance(change, tuple) and entry == "change":
                operation, row, old_key, position = change
                sink.change(operation, row, old_key[: len(key)] if old_key else None, position)
            elif isinstance(change, tuple):
                pending.append(change)
            else:
                for at in range(0, len(pending), 5):  # batches of a few changes
                    sink.changes(_batch(pending[at : at + 5], key))
                pending = []
                if change == "truncate":
                    sink.truncate(0)
    store.close()
    engine = sa.create_engine(config.url)
    with engine.connect() as conn:
        copied = [tuple(r) for r in conn.exec_driver_sql(f"SELECT id, name, big FROM {table}")]
    engine.dispose()
    assert sorted(copied) == _model(start, changes)


def test_fold_fills_an_unsent_value_from_the_same_keys_earlier_change_only() -> None:
    changes: list[Change] = [
        ("insert", {"id": 1, "region": "r", "name": "a", "big": "B1"}, None, 1),
        ("update", {"id": 2, "region": "r", "name": "x", "big": UNSENT}, None, 2),  # kept
        ("update", {"id": 1, "region": "r", "name": "b", "big": UNSENT}, None, 3),  # takes B1
        ("delete", {"id": 3, "region": "r", "name": None, "big": None}, None, 4),
        ("update", {"id": 4, "region": "r", "name": "m", "big": "B4"}, (3,), 5),  # 3 moved
    ]
    folded = fold(_batch(changes), KEY)
    got = sorted(
        zip(*(folded.rows.column(c).to_pylist() for c in ("id", "name", "big")), strict=True)
    )
    assert got == [(1, "b", "B1"), (2, "x", None), (3, None, None), (4, "m", "B4")]
    by_id = dict(zip(folded.rows.column("id").to_pylist(), range(4), strict=True))
    assert folded.deleted[by_id[3]] and not folded.deleted[by_id[4]]
    assert folded.partial().tolist() == [i == by_id[2] for i in range(4)]


def test_batches_with_and_without_old_keys_fold_together() -> None:
    """A batch with an update that moved its key, then one with none (a binlog rows event
    each), the key NOT NULL as a primary key is: folded as one."""
    schema = SCHEMA.set(0, SCHEMA.field("id").with_nullable(False))
    moved = _batch([("update", {"id": 5, "region": "r", "name": "m", "big": "B"}, (4,), 1)])
    added = _batch([("insert", {"id": 6, "region": "r", "name": "n", "big": "C"}, None, 2)])
    batches = [aligned(b, schema) for b in (moved, added)]
    folded = fold(concatenated(batches, KEY), KEY)
    deleted = dict(zip(folded.rows.column("id").to_pylist(), folded.deleted, strict=True))
    assert deleted == {4: True, 5: False, 6: False}
