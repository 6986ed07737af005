"""A decoder of PostgreSQL's `pgoutput` messages, protocol version 1, values in text form.

The format is small and documented ("Logical Replication Message Formats" in the PostgreSQL
manual): one message per row that `pg_logical_slot_peek_binary_changes` returns. Begin and
Commit frame each transaction; a Relation message describes a table (its columns, in the order
of every later tuple) before its first change and again after its columns change; Insert,
Update, Delete carry tuples; Truncate names tables. A tuple's value is NULL, text, or
"unchanged TOAST" (`UNCHANGED`: an update that did not touch a large value does not resend it).

Why our own decoder and not a package: the packages on PyPI either read through psycopg2's
streaming connection and wrap each change in pydantic models (pypgoutput, a prototype by its
own word), or are young (pgoutput) or built on Rust and asyncio (pgoutput-decoder); we read
with plain SQL through psycopg 3 and need five message layouts, which fit on one page here.
"""

import struct
from dataclasses import dataclass, field
from typing import Any


class _Unchanged:
    """The value of a TOASTed column that an update did not change (and so did not send)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str  # d(efault), n(othing), f(ull), i(ndex)
    columns: tuple[str, ...]
    key_flags: tuple[bool, ...]
    type_oids: tuple[int, ...]


@dataclass(frozen=True)
class Change:
    """An insert, update or delete: the new tuple (insert, update), or the key or old tuple
    (delete), as text values, None for NULL, `UNCHANGED` for unchanged TOAST."""

    operation: str  # insert | update | delete
    relation: int
    values: tuple[Any, ...]
    old: tuple[Any, ...] | None = None  # an update's old key (or row), sent when it changed


@dataclass(frozen=True)
class Truncate:
    relations: tuple[int, ...] = field(default_factory=tuple)


Message = Begin | Commit | Relation | Change | Truncate | None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def unpack(self, fmt: str) -> Any:
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        text = self.data[self.at : end].decode()
        self.at = end + 1
        return text

    def tuple_data(self) -> tuple[Any, ...]:
        """The hot loop of a run: plain byte arithmetic, no struct call per value."""
        data, at = self.data, self.at
        values: list[Any] = []
        for _ in range(int.from_bytes(data[at : at + 2], "big")):
            kind = data[at + 2]
            at += 1
            if kind == 0x74:  # t: text
                length = int.from_bytes(data[at + 2 : at + 6], "big")
                values.append(data[at + 6 : at + 6 + length].decode())
                at += 4 + length
            elif kind == 0x6E:  # n: NULL
                values.append(None)
            elif kind == 0x75:  # u: unchanged TOAST
                values.append(UNCHANGED)
            else:
                raise ValueError(f"pgoutput: unknown tuple value kind {chr(kind)!r}")
        self.at = at + 2
        return tuple(values)


def decode(data: bytes) -> Message:
    """One message; None for the kinds a copy ignores (Origin, Type, logical Message)."""
    reader = _Reader(bytes(data))
    kind = reader.unpack("!c")
    if kind == b"B":
        final_lsn, _timestamp, xid = reader.unpack("!qqI")
        return Begin(final_lsn, xid)
    if kind == b"C":
        _flags, commit_lsn, end_lsn, _timestamp = reader.unpack("!bqqq")
        return Commit(commit_lsn, end_lsn)
    if kind == b"R":
        oid = reader.unpack("!I")
        namespace, name = reader.string(), reader.string()
        identity = chr(reader.unpack("!b"))
        columns, keys, types = [], [], []
        for _ in range(reader.unpack("!h")):
            flags = reader.unpack("!b")
            columns.append(reader.string())
            type_oid, _modifier = reader.unpack("!Ii")
            keys.append(bool(flags & 1))
            types.append(type_oid)
        return Relation(oid, namespace, name, identity, tuple(columns), tuple(keys), tuple(types))
    if kind == b"I":
        oid = reader.unpack("!I")
        reader.unpack("!c")  # N
        return Change("insert", oid, reader.tuple_data())
    if kind == b"U":
        oid = reader.unpack("!I")
        marker, old = reader.unpack("!c"), None
        if marker in (b"K", b"O"):  # the old key or row, when the key changed or identity full
            old = reader.tuple_data()
            reader.unpack("!c")  # N
        return Change("update", oid, reader.tuple_data(), old)
    if kind == b"D":
        oid = reader.unpack("!I")
        reader.unpack("!c")  # K or O
        return Change("delete", oid, reader.tuple_data())
    if kind == b"T":
        count, _options = reader.unpack("!ib")
        return Truncate(tuple(reader.unpack("!I") for _ in range(count)))
    return None


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it: `16/B374D848`."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_value(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)
