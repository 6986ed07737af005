"""A run's source tables described all at once, instead of one catalog conversation each.

Describing one PostgreSQL table through SQLAlchemy takes about ten catalog queries (columns,
keys, constraints, indexes, comments); SQLAlchemy asks the same queries once for many tables
(`MetaData.reflect`). In a run of many small tables the tables' own reflections were a third of
their time. A run's step describes the source tables it is about to copy in one go, inside
`shared_engines()` (`SqlStore.describe_ahead`); each table's store takes its description from
there when it first asks (`engines.take_described`), once: a retry of the table describes it
anew.

A table is then copied as its source described it at the run's start, not at its own start; one
whose columns changed in between is copied as it was described (a column added meanwhile comes
with the next run; one dropped fails the table, naming the column, and its retry describes it
anew). Only sources are described ahead: a destination is described under the table's lock,
which is what keeps two runs from changing it at once. Stores whose reflection needs
corrections (`reflection_listeners`), or that do not share their engine, describe each table
on their own.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from copyjob_dagster.stores.identifiers import NameRules


def reflect_together(
    engine: sa.Engine, schema: str | None, tables: Sequence[str], rules: NameRules
) -> dict[str, sa.Table]:
    """`tables` reflected by one `MetaData.reflect`, by name; those not found (or views) are
    left out. On an error nothing is returned: each table's own reflection then meets it, and
    reports it as it always did."""
    wanted = {name for name in tables if not rules.problem(name)}
    metadata = sa.MetaData()
    try:
        metadata.reflect(engine, schema=schema, only=lambda name, _: name in wanted)
    except sa.exc.SQLAlchemyError:
        return {}
    return {
        table.name: table
        for table in metadata.tables.values()
        if table.schema == schema and table.name in wanted
    }
