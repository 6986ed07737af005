"""`copyjob new`: a copy job's steps asked one at a time, and the job file they make.

The steps follow a Copy job's order: name, source, tables and columns, destination, mapping,
mode, review and save. Answers come from an `Answers` (a person at a terminal, or flags), and
every question has a default. Stores are reached through `discovery` only. The file is written
whole at the end or not at all; a password never enters it: the URL holds `${VARIABLE}`.
"""

import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from sqlalchemy.engine import make_url

from copyjob_dagster.cli.answers import DERIVED_MAP, Answers, split_list
from copyjob_dagster.config import (
    JOB_FILE_SUFFIXES,
    JOB_NAME_PATTERN,
    RESERVED_JOB_NAMES,
    StoreConfig,
)
from copyjob_dagster.engine import (
    TableSummary,
    check_destination,
    explore_source,
    incremental_candidates,
    logs_in,
)
from copyjob_dagster.errors import ConfigError, CopyJobError, SourceError
from copyjob_dagster.stores import TableDescription, capabilities_of

Role = Literal["source", "destination"]
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
_KEYS = {
    "source": ("source-url", "source-schema", "password-env"),
    "destination": ("destination-url", "destination-schema", "destination-password-env"),
}
_WRITES = {
    "merge": "merge: upsert by the primary key, so each row is there once, in its latest version",
    "append": "append: add the new rows; a row updated at the source is added again (history)",
}


@dataclass(frozen=True)
class Store:
    """A store as the job file holds it (`written`) and as the wizard reaches it (`live`)."""

    typed: str = field(repr=False)  # offered again when the store cannot be used
    written: dict[str, str]
    live: StoreConfig
    password_env: str | None = None


@dataclass
class TableDraft:
    """One table's answers so far."""

    description: TableDescription
    rows: int
    columns: list[str]
    to: str | None = None
    rename: dict[str, str] = field(default_factory=dict)
    incremental_column: str | None = None
    primary_key: list[str] = field(default_factory=list)
    write: str | None = None

    @property
    def name(self) -> str:
        return self.description.name

    def as_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name}
        if self.columns != self.description.column_names:
            config["columns"] = self.columns  # all columns: left out, so new ones follow
        if self.to and self.to != self.name:
            config["to"] = self.to
        if self.rename:
            config["rename"] = self.rename
        if self.incremental_column:
            config["incremental_column"] = self.incremental_column
            if self.primary_key:
                config["primary_key"] = self.primary_key
            config["write"] = self.write
        return config


@dataclass(frozen=True)
class NewJob:
    name: str
    path: Path
    missing_variables: list[str]


class Wizard:
    """Asks the steps in order, shows what it finds, and saves the job file."""

    def __init__(self, answers: Answers, console: Console, jobs: Path, project: Path) -> None:
        self.answers = answers
        self.console = console
        self.jobs = jobs
        self.project = project

    def run(self) -> NewJob | None:
        """The saved job, or None when the person chose not to save."""
        name = self.ask_name()
        source, tables = self.ask_source_and_tables(name)
        destination = self.ask_destination(name)
        self.ask_mapping(tables, source.live.identity == destination.live.identity)
        mode = self.ask_mode(tables, destination)
        job = {
            "name": name,
            "source": source.written,
            "destination": destination.written,
            "mode": mode,
            "tables": [table.as_config() for table in tables],
        }
        text = f"# Written by `copyjob new`.\n{yaml.safe_dump(job, sort_keys=False)}"
        path = self.jobs / f"{name}.yaml"
        self.review(text, tables, mode)
        self.answers.finish()
        if not self.answers.confirm("save", f"Save it as {_shown(path)}?", True):
            return None
        save(path, text)
        self.console.print(f"saved {_shown(path)}", highlight=False)
        variables = [store.password_env for store in (source, destination) if store.password_env]
        return NewJob(name, path, [v for v in variables if v not in os.environ])

    # -- 1. name ----------------------------------------------------------------------------

    def ask_name(self) -> str:
        taken = _taken_names(self.jobs)

        def problem(name: str) -> str | None:
            if not re.fullmatch(JOB_NAME_PATTERN, name):
                return (
                    "use words of letters and digits joined by single underscores, starting "
                    "with a letter, e.g. shop_to_warehouse"
                )
            if name in RESERVED_JOB_NAMES:
                return f"{name!r} is reserved by Python or Dagster: choose another name"
            if name in taken:
                return f"{taken[name]} already holds a job named {name!r}"
            return None

        default = next(
            name for n in range(1, 1000) if (name := _numbered("copy_job", n)) not in taken
        )
        return self.answers.text("name", "Name of the copy job", default, problem)

    # -- 2 and 3. source, tables, columns -----------------------------------------------------

    def ask_source_and_tables(self, job: str) -> tuple[Store, list[TableDraft]]:
        default = ""
        while True:
            source = self.ask_store("source", job, default)
            default = source.typed
            try:
                with explore_source(source.live) as catalog:
                    summaries = catalog.tables()
                    if not summaries:
                        raise SourceError(f"source {source.live.masked_url} holds no tables")
                    self.show_tables(source, summaries)
                    chosen = self.ask_tables(summaries)
                    described = {name: catalog.describe(name) for name in chosen}
            except CopyJobError as exc:
                self.answers.retry(str(exc))
                continue
            break
        rows = {summary.name: summary.rows for summary in summaries}
        tables = []
        for name in chosen:
            description = described[name]
            columns = self.answers.pick(
                f"columns:{name}", f"{name}: columns to copy", description.column_names
            )
            tables.append(TableDraft(description, rows[name], columns))
        return source, tables

    def show_tables(self, source: Store, summaries: list[TableSummary]) -> None:
        self.console.print(
            f"connected to {source.live.masked_url}: {len(summaries)} tables", highlight=False
        )
        listing = Table("#", "table", "rows")
        listing.columns[0].justify = listing.columns[2].justify = "right"
        for number, summary in enumerate(summaries, start=1):
            listing.add_row(str(number), summary.name, f"{summary.rows:,}")
        self.console.print(listing)

    def ask_tables(self, summaries: list[TableSummary]) -> list[str]:
        names = [summary.name for summary in summaries]
        return select_tables(
            self.answers.text(
                "tables",
                "Tables to copy: numbers (1,3-5), names, or globs such as sales_*",
                "*",
                lambda spec: _problem_of(select_tables, spec, names),
            ),
            names,
        )

    # -- 4. destination ---------------------------------------------------------------------

    def ask_destination(self, job: str) -> Store:
        default = _shown(self.project / "lake" / job)
        while True:
            destination = self.ask_store("destination", job, default)
            default = destination.typed
            try:
                check_destination(destination.live)
            except CopyJobError as exc:
                self.answers.retry(str(exc))
                continue
            what = "writable" if destination.live.is_folder else "reachable"
            self.console.print(
                f"destination {destination.live.masked_url}: {what}", highlight=False
            )
            return destination

    # -- a store's URL, schema and password ---------------------------------------------------

    def ask_store(self, role: Role, job: str, default: str) -> Store:
        url_key, schema_key, password_key = _KEYS[role]
        typed = self.answers.text(
            url_key, f"{role.capitalize()}: a database URL, or a folder", default, _url_problem
        )
        if "${" in typed:  # the person wrote their own variables: the file keeps them
            return Store(typed, {"url": typed}, StoreConfig(url=os.path.expandvars(typed)))
        if "://" not in typed:
            path = (Path.cwd() / Path(typed).expanduser()).resolve()
            if path.is_file() and path.suffix in SQLITE_SUFFIXES:
                return self.sqlite_store(typed, path)
            return Store(typed, {"url": self.portable(path)}, StoreConfig(url=str(path)))
        url = make_url(typed)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return self.sqlite_store(typed, (Path.cwd() / url.database).resolve())
        schema = self.answers.text(schema_key, f"{role.capitalize()} schema (empty: default)", "")
        if not url.username:
            return Store(
                typed, _written(typed, schema), StoreConfig(url=typed, schema=schema or None)
            )
        # A login that works without a password (trust, peer) is offered no variable.
        needs_one = url.password or not logs_in(StoreConfig(url=typed, schema=schema or None), role)
        variable = self.answers.text(
            password_key,
            f"Environment variable holding the {role}'s password (empty: none)",
            f"{job.upper()}_{role.upper()}_PASSWORD" if needs_one else "",
            _variable_problem,
        )
        return self.password_store(role, typed, variable or None, schema)

    def password_store(self, role: Role, typed: str, variable: str | None, schema: str) -> Store:
        url = make_url(typed)
        secret_query = [key for key in url.query if "password" in key.lower()]
        bare = url.difference_update_query(secret_query)
        if url.password or secret_query:
            self.console.print(
                f"the password in the {role} URL is used now, and never written to the file"
                + (f"; the job reads it from ${variable}" if variable else ""),
                highlight=False,
            )
        password = (os.environ.get(variable) if variable else None) or url.password
        if variable:
            placeholder = bare.set(password="x").render_as_string(hide_password=True)
            written = placeholder.replace(":***@", f":${{{variable}}}@", 1)
            if variable not in os.environ:
                self.console.print(
                    f"{variable} is not set: export {variable}=... before running the job",
                    highlight=False,
                )
                typed_password = self.answers.secret(
                    f"The {role}'s password, to test the connection now (hidden, never saved)"
                )
                password = password or typed_password or None
        else:
            written = bare.set(password=None).render_as_string(hide_password=False)
        live = url.set(password=password).render_as_string(hide_password=False)
        config = StoreConfig(url=live, schema=schema or None)
        return Store(typed, _written(written, schema), config, variable)

    def sqlite_store(self, typed: str, path: Path) -> Store:
        written = {"url": f"sqlite:///{self.portable(path)}"}
        return Store(typed, written, StoreConfig(url=f"sqlite:///{path}"))

    def portable(self, path: Path) -> str:
        """A path as the job file holds it: relative to the project folder (against which job
        files resolve relative paths) when inside it, else absolute."""
        return (
            str(path.relative_to(self.project)) if path.is_relative_to(self.project) else str(path)
        )

    # -- 5. mapping -------------------------------------------------------------------------

    def ask_mapping(self, tables: list[TableDraft], same_store: bool) -> None:
        if not same_store and not self.answers.confirm(
            DERIVED_MAP, "Rename destination tables or columns?", False
        ):
            return
        for index, table in enumerate(tables):
            taken = {other.to for other in tables[:index]}

            def to_problem(
                to: str, table: TableDraft = table, taken: set[str | None] = taken
            ) -> str | None:
                if not to:
                    return "name the destination table"
                if to in taken:
                    return f"another table is already copied to {to!r}"
                if same_store and to == table.name:
                    return "the destination is the source store: give the copy another name"
                return None

            default = f"{table.name}_copy" if same_store else table.name
            table.to = self.answers.text(
                f"to:{table.name}", f"{table.name}: destination table", default, to_problem
            )
            table.rename = parse_renames(
                self.answers.text(
                    f"rename:{table.name}",
                    f"{table.name}: rename columns, old=new, comma-separated (empty: none)",
                    "",
                    lambda text, table=table: _problem_of(parse_renames, text, table.columns),
                ),
                table.columns,
            )

    # -- 6. mode ----------------------------------------------------------------------------

    def ask_mode(self, tables: list[TableDraft], destination: Store) -> str:
        modes = {
            "full": "full: copy every row each run, replacing the destination table",
            "incremental": "incremental: copy only the rows beyond the last run's watermark",
        }
        while True:
            mode = self.answers.choose("mode", "Copy mode", modes, "full")
            if mode == "full":
                return mode
            without = [
                t.name for t in tables if not incremental_candidates(t.description, t.columns)
            ]
            if not without:
                break
            self.answers.retry(
                f"table(s) {', '.join(without)} have no integer, date or timestamp column among "
                f"the copied ones for an incremental copy to follow: choose full, or start again "
                f"without them"
            )
        for table in tables:
            self.ask_incremental(table, capabilities_of(destination.live).merge)
        return mode

    def ask_incremental(self, table: TableDraft, can_merge: bool) -> None:
        candidates = incremental_candidates(table.description, table.columns)
        table.incremental_column = self.answers.choose(
            f"incremental-column:{table.name}",
            f"{table.name}: the column whose values grow with each new or changed row",
            {c.column: f"{c.column} ({c.kind})" for c in candidates},
            candidates[0].column,
        )
        found = [k for k in table.description.primary_key if k in table.columns]
        table.primary_key = split_list(
            self.answers.text(
                f"primary-key:{table.name}",
                f"{table.name}: primary key, comma-separated (empty: none)",
                ", ".join(found),
                lambda text: _unknown_columns(split_list(text), table.columns),
            )
        )
        if not can_merge:
            table.write = "append"
            self.console.print(
                f"{table.name}: write: append (a Parquet folder is appended to; merge by key "
                f"needs a database or Delta destination)"
            )
            return
        writes = _WRITES if table.primary_key else {"append": _WRITES["append"]}
        table.write = self.answers.choose(
            f"write:{table.name}",
            f"{table.name}: how new rows are written",
            writes,
            "merge" if table.primary_key else "append",
        )

    # -- 7. review --------------------------------------------------------------------------

    def review(self, text: str, tables: list[TableDraft], mode: str) -> None:
        # Soft wrap: each line whole, as saved (the terminal folds it), never cut at the width.
        highlighted = Syntax(text, "yaml", theme="ansi_dark", background_color="default")
        self.console.print(highlighted.highlight(text), soft_wrap=True)
        first = Table("table", "first run copies", title="The first run")
        first.columns[1].justify = "right"
        for table in tables:
            first.add_row(table.name, f"{table.rows:,} rows")
        self.console.print(first)
        if mode == "incremental":
            self.console.print("later runs copy only the rows beyond each table's watermark")


def save(path: Path, text: str) -> None:
    """Write the file whole or not at all (a temporary file, linked into place), never over
    an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.link(temporary, path)
    except FileExistsError:
        raise ConfigError(f"{path} exists already; nothing written") from None
    finally:
        temporary.unlink(missing_ok=True)


def select_tables(spec: str, names: list[str]) -> list[str]:
    """Tables by number (1-based, ranges such as 3-5), by name, or by glob, in that order."""
    chosen: list[str] = []
    for token in split_list(spec):
        if re.fullmatch(r"\d+(-\d+)?", token):
            first, _, last = token.partition("-")
            numbers = range(int(first), int(last or first) + 1)
            if not numbers or numbers[0] < 1 or numbers[-1] > len(names):
                raise ConfigError(f"{token}: the tables are numbered 1 to {len(names)}")
            matches = [names[number - 1] for number in numbers]
        elif token in names:
            matches = [token]
        elif any(character in token for character in "*?["):
            matches = fnmatch.filter(names, token)
            if not matches:
                raise ConfigError(f"no table matches {token!r}")
        else:
            raise ConfigError(f"no table {token!r}")
        chosen += [name for name in matches if name not in chosen]
    if not chosen:
        raise ConfigError("choose at least one table")
    return chosen


def parse_renames(text: str, columns: list[str]) -> dict[str, str]:
    """`amount=total, x=y` -> {amount: total, x: y}, for selected columns, without clashes."""
    renames: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        old, separator, new = (s.strip() for s in part.partition("="))
        if not separator or not old or not new:
            raise ConfigError(f"{part!r}: write old=new")
        renames[old] = new
    problem = _unknown_columns(list(renames), columns)
    if problem:
        raise ConfigError(problem)
    names = [renames.get(column, column) for column in columns]
    clashing = sorted({name for name in names if names.count(name) > 1})
    if clashing:
        raise ConfigError(f"several columns would be named {', '.join(clashing)}")
    return renames


def _problem_of(parse: Callable[..., object], *args: Any) -> str | None:
    try:
        parse(*args)
    except ConfigError as exc:
        return str(exc)
    return None


def _unknown_columns(named: list[str], columns: list[str]) -> str | None:
    unknown = [name for name in named if name not in columns]
    if unknown:
        return f"no copied column {', '.join(unknown)} (columns: {', '.join(columns)})"
    return None


def _url_problem(url: str) -> str | None:
    if not url:
        return "give a URL such as postgresql+psycopg://user@host/db, or a folder"
    if "://" not in url or "${" in url:
        return None
    try:
        StoreConfig(url=url)
    except ValidationError as exc:
        return exc.errors()[0]["msg"].removeprefix("Value error, ")
    return None


def _written(url: str, schema: str) -> dict[str, str]:
    """A store's mapping in the job file."""
    return {"url": url, "schema": schema} if schema else {"url": url}


def _variable_problem(name: str) -> str | None:
    if name and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return "a variable name is letters, digits and _"
    return None


def _taken_names(jobs: Path) -> dict[str, str]:
    """Job names in use, by the file that holds them (also each file's own name)."""
    taken: dict[str, str] = {}
    if not jobs.is_dir():
        return taken
    for path in sorted(jobs.iterdir()):
        if path.suffix not in JOB_FILE_SUFFIXES:
            continue
        taken[path.stem] = path.name
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(tree, dict) and isinstance(tree.get("name"), str):
            taken[tree["name"]] = path.name
    return taken


def _numbered(stem: str, number: int) -> str:
    return stem if number == 1 else f"{stem}_{number}"


def _shown(path: Path) -> str:
    """A path relative to the working folder when inside it, for people."""
    here = Path.cwd()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)
