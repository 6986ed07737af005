"""An incremental window, and the key range of one part of a split read, as WHERE conditions
with bound values."""

from typing import Any

import sqlalchemy as sa

from copyjob_dagster.stores.base import KeyRange, Window


def window_conditions(table: sa.Table, window: Window) -> list[sa.ColumnElement[bool]]:
    """The window as WHERE conditions; bounds are bound parameters of the column's type."""
    cursor = table.c[window.column]
    conditions = [cursor.is_not(None)]
    if window.low is not None:
        conditions.append(cursor >= window.low if window.low_inclusive else cursor > window.low)
    if window.high is not None:
        conditions.append(cursor <= window.high)
    return conditions


def range_conditions(table: sa.Table, part: KeyRange) -> list[sa.ColumnElement[bool]]:
    """[low, high) of the part's column, OR its NULLs when the part holds them."""
    column = table.c[part.column]
    inside = []
    if part.low is not None:
        inside.append(column >= part.low)
    if part.high is not None:
        inside.append(column < part.high)
    if not inside:
        return [] if part.nulls else [column.is_not(None)]
    condition = sa.and_(*inside)
    return [sa.or_(column.is_(None), condition) if part.nulls else condition]


def span_query(
    table: sa.Table, column: str, conditions: list[sa.ColumnElement[bool]]
) -> sa.Select[Any]:
    """The smallest and largest value of `column` among the rows that meet `conditions`."""
    cursor = table.c[column]
    return sa.select(sa.func.min(cursor), sa.func.max(cursor)).where(*conditions)
