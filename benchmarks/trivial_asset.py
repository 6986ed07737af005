"""A Dagster asset that does nothing: the floor of a materialization through a command."""

import dagster as dg


@dg.asset
def trivial() -> None:
    return None


defs = dg.Definitions(assets=[trivial])
