"""SQLAlchemy engines shared by the stores that the tables of one run open.

Each table of a run opens its source and destination (`engine.table_stores`), and each store
used to make an engine of its own and dispose of it at the table's end. For a small table that
was most of the table's cost: a new connection to the server (with the dialect's first-connect
queries), and every statement compiled anew, since SQLAlchemy keeps compiled statements per
engine (reflecting one PostgreSQL table compiles about ten catalog queries). Inside
`shared_engines()`, stores that opt in (`SqlStore.shares_engine`) with the same URL and
timeouts take one engine, kept until the last open scope ends: its idle connections, and the
statements it compiled, serve the next table.

What a connection carries from one table to the next is what SQLAlchemy's pool leaves: it rolls
back on return and resets the isolation level; a store whose sessions keep other state (session
settings made after connecting, temporary tables) does not opt in. A shared engine has no cap on
connections at once (`max_overflow=-1`): what bounds them is what bounded them before, the
tables copying at once (`max_parallel_tables`, the source's pool); at most `KEPT_IDLE` idle
connections stay open per engine until the scope ends.

A scope also holds the tables that were described ahead, all at once (`reflection`): each is
handed to the first store of its engine that asks for it, once, and forgotten when the scope
ends.
"""

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

KEPT_IDLE = 4  # idle connections a shared engine keeps open, per URL

_lock = threading.Lock()
_scopes = 0
_engines: dict[Hashable, sa.Engine] = {}
_described: dict[tuple[sa.Engine, str | None, str], sa.Table] = {}


@contextmanager
def shared_engines() -> Iterator[None]:
    """Within this scope (and any other open at the same time), stores share their engines;
    they are disposed of when the last scope ends."""
    global _scopes
    with _lock:
        _scopes += 1
    try:
        yield
    finally:
        with _lock:
            _scopes -= 1
            ended = list(_engines.values()) if _scopes == 0 else []
            if _scopes == 0:
                _engines.clear()
                _described.clear()
        for engine in ended:
            engine.dispose()


def engine_for(
    key: Hashable, make: Callable[..., sa.Engine], options: dict[str, Any]
) -> tuple[sa.Engine, bool]:
    """The engine `make(**options)` returns, shared under `key` inside a scope; and whether it
    is shared (its owner then leaves it open when it closes)."""
    with _lock:
        if _scopes == 0:
            return make(**options), False
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = make(**options, pool_size=KEPT_IDLE, max_overflow=-1)
        return engine, True


def keep_described(engine: sa.Engine, schema: str | None, tables: dict[str, sa.Table]) -> None:
    """Hold `tables`, reflected through the shared `engine`, until a store takes them; outside a
    scope (nothing shared), nothing is held."""
    with _lock:
        if _scopes and engine in _engines.values():
            _described.update({(engine, schema, name): t for name, t in tables.items()})


def take_described(engine: sa.Engine, schema: str | None, table: str) -> sa.Table | None:
    """The table as described ahead through `engine`, once; None if it was not."""
    with _lock:
        return _described.pop((engine, schema, table), None)
