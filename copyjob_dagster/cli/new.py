"""`copyjob new`: the wizard's steps, at a terminal or from flags, then the job validated."""

import sys
from typing import Any

import click
from rich.console import Console

from copyjob_dagster.cli.answers import FlagAnswers, TerminalAnswers, given_answers
from copyjob_dagster.cli.validate import validate_jobs
from copyjob_dagster.cli.wizard import Wizard
from copyjob_dagster.errors import CopyJobError
from copyjob_dagster.project import jobs_dir, project_dir

_PER_TABLE = {
    "columns": "TABLE=COL,COL",
    "to": "TABLE=NAME",
    "rename": "TABLE.COLUMN=NEW",
    "incremental-column": "TABLE=COLUMN",
    "primary-key": "TABLE=COL,COL",
    "write": "TABLE=append|merge",
}


@click.command()
@click.option("--non-interactive", is_flag=True, help="Ask nothing: flags, else defaults.")
@click.option("--name", help="The job's name.")
@click.option("--source-url", help="Source database URL or folder.")
@click.option("--source-schema")
@click.option("--password-env", help="Variable holding the source's password.")
@click.option("--tables", help="Numbers, names or globs: '1,3-5', 'orders sales_*'.")
@click.option("--destination-url", help="Destination database URL or folder.")
@click.option("--destination-schema")
@click.option("--destination-password-env", help="Variable holding its password.")
@click.option("--mode", type=click.Choice(["full", "incremental"]))
@click.option("--columns", multiple=True, metavar=_PER_TABLE["columns"])
@click.option("--to", multiple=True, metavar=_PER_TABLE["to"])
@click.option("--rename", multiple=True, metavar=_PER_TABLE["rename"])
@click.option("--incremental-column", multiple=True, metavar=_PER_TABLE["incremental-column"])
@click.option("--primary-key", multiple=True, metavar=_PER_TABLE["primary-key"])
@click.option("--write", multiple=True, metavar=_PER_TABLE["write"])
def new(non_interactive: bool, **flags: Any) -> None:
    """Create a copy job step by step, save it in the jobs folder, and validate it.

    At a terminal each flag pre-fills its question; with --non-interactive the flags are the
    answers and every other question takes its default.
    """
    console = Console(highlight=False, markup=False)
    options = {key.replace("_", "-"): value for key, value in flags.items()}
    given = given_answers(
        {key: value for key, value in options.items() if key not in _PER_TABLE},
        {key: value for key, value in options.items() if key in _PER_TABLE},
    )
    if not non_interactive and not sys.stdin.isatty():
        raise CopyJobError(
            "copyjob new asks its questions in a terminal; in a script, answer them with flags "
            "and --non-interactive (see copyjob new --help)"
        )
    answers = FlagAnswers(given) if non_interactive else TerminalAnswers(console, given)
    try:
        created = Wizard(answers, console, jobs_dir(), project_dir()).run()
    except KeyboardInterrupt:
        click.echo("\ncancelled: no job file written", err=True)
        sys.exit(130)
    if created is None:
        click.echo("not saved: no job file written")
        return
    for variable in created.missing_variables:
        click.echo(f"before running it: export {variable}=<the password>")
    validate_jobs(connect=True)
    click.echo(f"run it now:   copyjob run {created.name}")
    click.echo(f"open the UI:  copyjob ui   (the asset group {created.name!r})")
