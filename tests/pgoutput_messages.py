"""pgoutput message parts built by hand, as the PostgreSQL manual's "Logical Replication
Message Formats" lays them out (protocol version 1, text values), for the decoder tests."""

import struct

from copyjob_dagster.stores.pgoutput import UNCHANGED


def tuple_data(*values: str | None | object) -> bytes:
    """TupleData: NULL as 'n', an unchanged TOASTed value as 'u', anything else as text."""
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        else:
            data = str(value).encode()
            out += b"t" + struct.pack("!i", len(data)) + data
    return out
