"""The typed watermark: the highest incremental value copied, kept as exact text plus its type.

A watermark never passes through float: integers and decimals keep every digit, timestamps their
microseconds and time zone (aware values are kept in UTC), dates and strings as they are. The
text reads naturally in the UI (`2024-03-01 12:00:00.123456+00:00`, `1500`, `19.99`) and parses
back to the same value, which is bound as a parameter of the column's own type.

Beside the value the watermark keeps a fingerprint of the source rows that held exactly that
value when it was taken (their count and an order-independent hash of their contents). The next
run takes the same fingerprint: while it matches, the rows at the watermark are the ones already
copied and the window starts after the value; when rows with that value arrived late, left it, or
changed, the window starts at the value and copies it again (idempotently).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import pyarrow as pa

from copyjob_dagster.errors import SchemaError, WatermarkError

WatermarkKind = Literal["integer", "decimal", "date", "timestamp", "timestamp_tz", "string"]


def watermark_kind(field: pa.Field) -> WatermarkKind:
    """The kind of watermark an incremental column holds; refuse types that cannot order."""
    t = field.type
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp_tz" if t.tz else "timestamp"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if (field.metadata or {}).get(b"copyjob.logical") not in (None, b"uuid"):
            raise SchemaError(
                f"incremental column {field.name!r} holds {field.metadata[b'copyjob.logical']!r}"
                f" values, which do not order; choose an integer, decimal, date or timestamp"
            )
        return "string"
    raise SchemaError(
        f"incremental column {field.name!r} has type {t}, which cannot serve as a watermark "
        f"(exact ordering needs an integer, decimal, date, timestamp or string column)"
    )


@dataclass(frozen=True)
class Watermark:
    """The highest incremental value copied, and the fingerprint of the rows that held it."""

    kind: WatermarkKind
    text: str
    rows_at_value: int
    fingerprint: str

    @classmethod
    def of(
        cls, kind: WatermarkKind, value: Any, rows_at_value: int, fingerprint: str
    ) -> "Watermark":
        return cls(kind, _to_text(kind, value), rows_at_value, fingerprint)

    @property
    def value(self) -> Any:
        """The watermark as the Python value to bind against the column."""
        return parse(self.kind, self.text)


def _to_text(kind: WatermarkKind, value: Any) -> str:
    if kind == "timestamp_tz":
        return value.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")
    if kind == "timestamp":
        return value.isoformat(sep=" ", timespec="microseconds")
    if kind == "date":
        return value.isoformat()
    return str(value)


def parse(kind: str, text: str) -> Any:
    """The value of a stored watermark; WatermarkError if the text does not fit its kind."""
    try:
        if kind == "integer":
            return int(text)
        if kind == "decimal":
            value = Decimal(text)
            if not value.is_finite():
                raise ValueError("not a finite number")
            return value
        if kind == "date":
            return date.fromisoformat(text)
        if kind in ("timestamp", "timestamp_tz"):
            value = datetime.fromisoformat(text)
            if (value.tzinfo is not None) != (kind == "timestamp_tz"):
                raise ValueError("time zone does not match the column")
            return value
        if kind == "string":
            return text
    except (ValueError, InvalidOperation) as exc:
        raise WatermarkError(f"stored watermark {text!r} is not a valid {kind}: {exc}") from None
    raise WatermarkError(f"stored watermark has unknown type {kind!r}")
