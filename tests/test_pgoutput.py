"""The pgoutput decoder on hand-made messages, laid out as the PostgreSQL manual's "Logical
Replication Message Formats" says (protocol version 1, text values): no server needed."""

import struct

from pgoutput_messages import tuple_data

from copyjob_dagster.stores.pgoutput import (
    UNCHANGED,
    Begin,
    Change,
    Commit,
    Relation,
    Truncate,
    decode,
    lsn_text,
    lsn_value,
)


def test_transaction_frame_and_relation() -> None:
    assert decode(b"B" + struct.pack("!qqI", 0x16B3748, 0, 77)) == Begin(0x16B3748, 77)
    assert decode(b"C" + struct.pack("!bqqq", 0, 100, 120, 0)) == Commit(100, 120)
    relation = (
        b"R" + struct.pack("!I", 16384) + b"public\0items\0" + struct.pack("!bh", ord("d"), 2)
        + struct.pack("!b", 1) + b"id\0" + struct.pack("!Ii", 23, -1)
        + struct.pack("!b", 0) + b"big\0" + struct.pack("!Ii", 25, -1)
    )  # fmt: skip
    assert decode(relation) == Relation(
        16384, "public", "items", "d", ("id", "big"), (True, False), (23, 25)
    )


def test_changes_keep_null_unchanged_toast_and_the_old_key() -> None:
    insert = b"I" + struct.pack("!I", 16384) + b"N" + tuple_data("1", "é" * 3)
    assert decode(insert) == Change("insert", 16384, ("1", "ééé"))
    update = b"U" + struct.pack("!I", 16384) + b"N" + tuple_data("1", UNCHANGED)
    assert decode(update) == Change("update", 16384, ("1", UNCHANGED))
    moved = (
        b"U" + struct.pack("!I", 16384) + b"K" + tuple_data("1", None) + b"N" + tuple_data("2", "x")
    )
    assert decode(moved) == Change("update", 16384, ("2", "x"), ("1", None))
    delete = b"D" + struct.pack("!I", 16384) + b"K" + tuple_data("2", None)
    assert decode(delete) == Change("delete", 16384, ("2", None))
    truncate = b"T" + struct.pack("!ib", 2, 0) + struct.pack("!II", 16384, 16390)
    assert decode(truncate) == Truncate((16384, 16390))
    assert decode(b"Y" + struct.pack("!I", 1) + b"public\0t\0") is None  # types: ignored


def test_lsn_text_round_trips() -> None:
    assert lsn_text(0x16_B374D848) == "16/B374D848"
    assert lsn_value("16/B374D848") == 0x16_B374D848
    assert lsn_value(lsn_text(0)) == 0
