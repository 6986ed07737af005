"""The `copyjob` command: create, validate, plan, list and run jobs through Dagster; history,
watermarks, the demo and the UI. One module per command."""

import sys
from typing import Any

import click

from copyjob_dagster.cli import (
    cdc,
    demo,
    history,
    list_jobs,
    new,
    plan,
    pools,
    run,
    ui,
    validate,
    watermark,
)
from copyjob_dagster.errors import CopyJobError


class _Group(click.Group):
    """Shows a `CopyJobError` as one clear message and exit code 1, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CopyJobError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
def main() -> None:
    """Copy tables between databases and Parquet folders, as Dagster assets."""


for command in (
    validate.validate,
    plan.plan,
    watermark.watermark,
    run.run,
    new.new,
    list_jobs.list_,
    history.history,
    demo.demo,
    ui.ui,
    pools.pools,
    cdc.cdc,
):
    main.add_command(command)
