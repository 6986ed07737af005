"""The `copyjob` command: create, validate, plan, list and run jobs through Dagster; history,
watermarks, the demo and the UI. One module per command."""

import atexit
import contextlib
import gc
import importlib
import sys
from collections.abc import Iterator
from typing import Any

import click

from copyjob_dagster.errors import CopyJobError

# Each command's module and function, imported only when the command runs (or for --help):
# `copyjob run` does not import the wizard's prompt toolkit, nor the other commands.
COMMANDS = {
    "validate": ("validate", "validate"),
    "plan": ("plan", "plan"),
    "watermark": ("watermark", "watermark"),
    "run": ("run", "run"),
    "new": ("new", "new"),
    "list": ("list_jobs", "list_"),
    "history": ("history", "history"),
    "demo": ("demo", "demo"),
    "ui": ("ui", "ui"),
    "pools": ("pools", "pools"),
    "cdc": ("cdc", "cdc"),
    "maintain": ("maintain", "maintain"),
}


class _Group(click.Group):
    """Loads each command when it is asked for; shows a `CopyJobError` as one clear message and
    exit code 1, without a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name]
        with _uncollected_imports(f"{__name__}.{module}"):
            command = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        # When the process ends, the interpreter collects garbage over every object still
        # alive, Dagster's and the drivers' hundreds of thousands: 0.5-0.9 s of CPU, 1.5-3 s on
        # a busy machine, after a `copyjob run` had printed its result. Frozen first (at exit,
        # so a process that goes on, a test's, keeps collecting), they are left out of those
        # collections; the process frees them as it ends.
        atexit.unregister(gc.freeze)  # once, however many commands a process invokes
        atexit.register(gc.freeze)
        try:
            return super().invoke(ctx)
        except CopyJobError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@contextlib.contextmanager
def _uncollected_imports(module: str) -> Iterator[None]:
    """The command's first import (Dagster, SQLAlchemy, the drivers: about a million objects)
    made without the garbage collector, whose full collections would go over all of them again
    and again (four, ~0.3 s of CPU of `copyjob run`'s ~2 s, each before a row is copied); then
    frozen, so that the run's own collections leave them out. Modules live as long as the
    process, so freezing them keeps nothing alive that would have been freed."""
    if module in sys.modules or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


@click.group(cls=_Group)
def main() -> None:
    """Copy tables between databases and Parquet folders, as Dagster assets."""
