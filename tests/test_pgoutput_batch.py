"""The column-wise pgoutput decoder against the message-by-message one, on hand-made messages
(laid out as the PostgreSQL manual says), and the typing of text columns against the
value-by-value converter: no server needed."""

import struct
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from pgoutput_messages import tuple_data

from copyjob_dagster.stores.pg_changes import text_converter, typed
from copyjob_dagster.stores.pgoutput import UNCHANGED, Change, Relation, decode
from copyjob_dagster.stores.pgoutput_batch import OPERATIONS, BatchDecoder, ChangeRun, TruncateAt

OID = 16384


def _relation(*columns: str) -> bytes:
    out = b"R" + struct.pack("!I", OID) + b"public\0items\0" + struct.pack("!bh", 100, len(columns))
    for index, name in enumerate(columns):
        out += (
            struct.pack("!b", int(index == 0)) + name.encode() + b"\0" + struct.pack("!Ii", 25, -1)
        )
    return out


def _begin(lsn: int) -> bytes:
    return b"B" + struct.pack("!qqI", lsn, 0, 7)


def _commit(lsn: int) -> bytes:
    return b"C" + struct.pack("!bqqq", 0, lsn, lsn + 8, 0)


MESSAGES = [
    _begin(100),
    _relation("id", "big"),
    b"I" + struct.pack("!I", OID) + b"N" + tuple_data("1", "é" * 3),
    b"U" + struct.pack("!I", OID) + b"N" + tuple_data("1", UNCHANGED),
    b"U" + struct.pack("!I", OID) + b"K" + tuple_data("1", None) + b"N" + tuple_data("2", "x"),
    b"D" + struct.pack("!I", OID) + b"K" + tuple_data("2", None),
    _commit(100),
    _begin(200),
    b"T" + struct.pack("!ib", 1, 0) + struct.pack("!I", OID),
    _relation("id", "big", "added"),
    b"I" + struct.pack("!I", OID) + b"N" + tuple_data("3", None, "new"),
    _commit(200),
    _begin(300),
    b"I" + struct.pack("!I", OID) + b"N" + tuple_data("4", "open", ""),
]


@pytest.mark.parametrize("fetch", [1, 3, len(MESSAGES)], ids=["one", "three", "all"])
def test_columns_hold_what_the_message_decoder_reads(fetch: int) -> None:
    decoder, decoded = BatchDecoder(), []
    for at in range(0, len(MESSAGES), fetch):
        decoded.extend(decoder.decode(MESSAGES[at : at + fetch]))
    changes, positions, kinds = [], [], []
    for item in decoded:
        kinds.append(type(item).__name__)
        if isinstance(item, ChangeRun):
            for row in range(len(item.operations)):
                values = tuple(
                    UNCHANGED if c.unchanged is not None and c.unchanged[row]
                    else c.values[row].as_py() for c in item.new
                )  # fmt: skip
                old = None
                if item.old is not None and item.old[0].values[row].is_valid:
                    old = tuple(c.values[row].as_py() for c in item.old)
                changes.append(Change(OPERATIONS[item.operations[row]], item.relation, values, old))
                positions.append(int(item.positions[row]))
        elif isinstance(item, TruncateAt):
            positions.append(item.position)
    wanted = [m for m in map(decode, MESSAGES) if isinstance(m, Change)]
    assert changes == wanted
    assert positions == [100, 100, 100, 100, 200, 200, 300]  # each change's commit LSN
    assert [k for k in kinds if k != "ChangeRun"] == ["Relation", "TruncateAt", "Relation"]
    assert (decoder.transactions, decoder.last_end, decoder.open) == (2, 208, True)
    assert decoded[0] == decode(MESSAGES[1]) and isinstance(decoded[0], Relation)


def test_a_bad_value_kind_is_named() -> None:
    bad = b"I" + struct.pack("!I", OID) + b"N" + struct.pack("!h", 1) + b"x"
    with pytest.raises(ValueError, match="unknown tuple value kind 'x'"):
        list(BatchDecoder().decode([_begin(1), bad]))


TEXTS = {
    pa.int32(): ["1", "-2147483648", None],
    pa.float64(): ["1.5", "Infinity", "-Infinity", "0.1", "1e+300", None],
    pa.decimal128(12, 2): ["1.50", "-3.00", "1234567890.12", None],
    pa.bool_(): ["t", "f", None],
    pa.timestamp("us", tz="UTC"): ["2024-01-01 00:00:00+00", "2024-06-01 12:30:00.5+05:30", None],
    pa.timestamp("us"): ["2024-01-01 00:00:00", "1999-12-31 23:59:59.999999"],
    pa.date32(): ["2024-02-29", None],
    pa.time64("us"): ["12:34:56", "00:00:00.25", None],
    pa.binary(): ["\\x00ff10", None],
    pa.string(): ["é", "", None],
}


@pytest.mark.parametrize("arrow_type", list(TEXTS), ids=str)
def test_typed_columns_equal_the_value_by_value_converter(arrow_type: pa.DataType) -> None:
    field = pa.field("c", arrow_type)
    text = pa.array(TEXTS[arrow_type], pa.large_string())
    convert = text_converter(field)
    wanted = pa.array([None if v is None else convert(v) for v in TEXTS[arrow_type]], arrow_type)
    assert typed(field, text).equals(wanted)
    if arrow_type == pa.timestamp("us", tz="UTC"):
        assert typed(field, text)[1].as_py() == datetime(2024, 6, 1, 7, 0, 0, 500000, UTC)
