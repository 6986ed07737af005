"""pgoutput messages decoded a fetch at a time, column by column, with numpy.

`pgoutput.decode` reads one message in Python; a run of 200,000 changes spent most of its time
there. Here the messages of one fetch are joined into one buffer, and the Insert, Update and
Delete messages (all but a few of them) are read together: the offset of every message's
first value is known, so each column's kind, length and text are gathered for all messages at
once, and its text becomes one Arrow string array (typed later, by `pg_changes.typed`). Begin
and Commit messages are read the same way (the position of each change is its transaction's
final LSN, which Begin carries). Only Relation and Truncate messages, which come once per schema
change or TRUNCATE, go through `pgoutput.decode`, and they split the changes into runs so that
every change of a run has the columns of the Relation before it.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from copyjob_dagster.stores import pgoutput

_BEGIN, _COMMIT, _RELATION, _TRUNCATE = ord("B"), ord("C"), ord("R"), ord("T")
_INSERT, _UPDATE, _DELETE = ord("I"), ord("U"), ord("D")
_TEXT, _NULL, _UNCHANGED = ord("t"), ord("n"), ord("u")
_OLD_KEY, _OLD_ROW = ord("K"), ord("O")
OPERATIONS = {_INSERT: "insert", _UPDATE: "update", _DELETE: "delete"}


@dataclass(frozen=True)
class TextColumn:
    """One column of a run: its text values (null where NULL, unchanged or not sent), and
    where an update did not resend an unchanged TOASTed value (None: nowhere)."""

    values: pa.LargeStringArray
    unchanged: np.ndarray | None


@dataclass(frozen=True)
class ChangeRun:
    """Consecutive changes to one relation, in order."""

    relation: int
    operations: np.ndarray  # uint8: ord("I"), ord("U"), ord("D")
    positions: np.ndarray  # int64: the commit LSN of each change's transaction
    new: list[TextColumn]  # the new row (insert, update); the key or old row (delete)
    old: list[TextColumn] | None  # an update's old key or row where sent (None: none was)


@dataclass(frozen=True)
class TruncateAt:
    relations: tuple[int, ...]
    position: int


Decoded = ChangeRun | pgoutput.Relation | TruncateAt


class BatchDecoder:
    """Decodes a slot's messages in order, fetch by fetch; it keeps what crosses fetches (the
    open transaction's position) and counts the transactions committed."""

    def __init__(self) -> None:
        self.position = 0  # the final LSN of the transaction begun last
        self.open = False  # inside a transaction (a Begin without its Commit yet)
        self.transactions = 0
        self.last_end = 0

    def decode(self, messages: list[bytes]) -> Iterator[Decoded]:
        if not messages:
            return
        lengths = np.fromiter(map(len, messages), dtype=np.int64, count=len(messages))
        starts = np.zeros(len(messages), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        buf = np.frombuffer(b"".join(messages) + bytes(16), dtype=np.uint8)
        kinds = buf[starts]
        positions = self._positions(buf, starts, kinds)
        changes = (kinds == _INSERT) | (kinds == _UPDATE) | (kinds == _DELETE)
        before = 0
        for at in [*np.flatnonzero((kinds == _RELATION) | (kinds == _TRUNCATE)), len(messages)]:
            picked = np.flatnonzero(changes[before:at]) + before
            if len(picked):
                relations = _be(buf, starts[picked] + 1, 4)
                for relation in np.unique(relations):
                    chosen = picked[relations == relation]
                    yield _run(buf, int(relation), starts[chosen], kinds[chosen],
                               positions[chosen])  # fmt: skip
            if at < len(messages):
                message = pgoutput.decode(messages[at])
                if isinstance(message, pgoutput.Truncate):
                    yield TruncateAt(message.relations, int(positions[at]))
                elif message is not None:
                    yield message
            before = at + 1

    def _positions(self, buf: np.ndarray, starts: np.ndarray, kinds: np.ndarray) -> np.ndarray:
        """Each message's transaction's final LSN (carried by its Begin), and the frame's
        bookkeeping: transactions committed, the last commit's end, an open transaction."""
        begins = np.flatnonzero(kinds == _BEGIN)
        commits = np.flatnonzero(kinds == _COMMIT)
        finals = _be(buf, starts[begins] + 1, 8)
        latest = np.maximum.accumulate(
            np.where(kinds == _BEGIN, np.arange(len(kinds)), -1), dtype=np.int64
        )
        lookup = np.empty(len(kinds), dtype=np.int64)
        lookup[begins] = finals
        positions = np.where(latest >= 0, lookup[np.maximum(latest, 0)], self.position)
        if len(begins):
            self.position = int(finals[-1])
        if len(commits):
            self.transactions += len(commits)
            self.last_end = int(_be(buf, starts[commits[-1:]] + 10, 8)[0])
        last_begin = begins[-1] if len(begins) else -1
        last_commit = commits[-1] if len(commits) else -1
        if last_begin != last_commit:  # both -1: a fetch inside one transaction
            self.open = last_begin > last_commit
        return positions


def _be(buf: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    """Big-endian unsigned integers of `size` bytes at each offset `at`."""
    value = np.zeros(len(at), dtype=np.int64)
    for i in range(size):
        value = (value << 8) | buf[at + i]
    return value


def _run(
    buf: np.ndarray, relation: int, starts: np.ndarray, kinds: np.ndarray, positions: np.ndarray
) -> ChangeRun:
    """Insert: kind, relation, 'N', tuple. Delete: kind, relation, 'K' or 'O', tuple. Update:
    kind, relation, then 'N' and the new tuple, or 'K'/'O', the old tuple, 'N', the new one."""
    at = starts + 6
    marker = buf[starts + 5]
    has_old = (kinds == _UPDATE) & ((marker == _OLD_KEY) | (marker == _OLD_ROW))
    old = None
    if has_old.any():
        which = np.flatnonzero(has_old)
        old_columns, ends = _tuples(buf, at[which])
        at[which] = ends + 1  # past the 'N' before the new tuple
        old = [_spread(column, which, len(starts)) for column in old_columns]
    new, _ = _tuples(buf, at)
    return ChangeRun(
        relation,
        kinds,
        positions,
        [_text(buf, *column) for column in new],
        [_text(buf, *column) for column in old] if old is not None else None,
    )


Located = tuple[np.ndarray, np.ndarray, np.ndarray]  # value starts, lengths, kinds


def _tuples(buf: np.ndarray, at: np.ndarray) -> tuple[list[Located], np.ndarray]:
    """Every column of the tuples that start at `at` (all of one relation, so as many columns
    each), and where each tuple ends."""
    counts = _be(buf, at, 2)
    if len(counts) and (counts != counts[0]).any():
        raise ValueError("pgoutput: tuples of one relation with different column counts")
    at = at + 2
    columns = []
    for _ in range(int(counts[0]) if len(counts) else 0):
        kind = buf[at]
        if ((kind != _TEXT) & (kind != _NULL) & (kind != _UNCHANGED)).any():
            unknown = kind[(kind != _TEXT) & (kind != _NULL) & (kind != _UNCHANGED)][0]
            raise ValueError(f"pgoutput: unknown tuple value kind {chr(unknown)!r}")
        text = kind == _TEXT
        length = np.where(text, _be(buf, np.where(text, at + 1, 0), 4), 0)
        columns.append((at + 5, length, kind))
        at = at + 1 + np.where(text, 4 + length, 0)
    return columns, at


def _spread(column: Located, rows: np.ndarray, size: int) -> Located:
    """A column read for some rows of a run, as the whole run's (NULL elsewhere)."""
    starts, lengths, kinds = (np.zeros(size, dtype=np.int64) for _ in range(3))
    kinds[:] = _NULL
    starts[rows], lengths[rows], kinds[rows] = column
    return starts, lengths, kinds


def _text(
    buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, kinds: np.ndarray
) -> TextColumn:
    """The column's text as one Arrow array: the value bytes gathered in a single take."""
    size = len(starts)
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    data = buf[np.repeat(starts - offsets[:-1], lengths) + np.arange(total)] if total else b""
    valid = kinds == _TEXT
    bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    values = pa.LargeStringArray.from_buffers(
        size, pa.py_buffer(offsets), pa.py_buffer(data), bitmap
    )
    values.validate(full=True)  # UTF-8, as `bytes.decode` checked
    unchanged = kinds == _UNCHANGED
    return TextColumn(values, unchanged if unchanged.any() else None)
