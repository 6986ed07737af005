"""Copy job files: pydantic models, loading, `${VAR}` expansion and validation.

A copy job is one YAML file. It is validated once, here, at the edge; everything below works on
the models. Every error names the file, the job, the table and the field.
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from copyjob_dagster.errors import ConfigError

JOB_FILE_SUFFIXES = (".yaml", ".yml")
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_URL_PASSWORD = re.compile(r"^[A-Za-z0-9+._-]+://[^:/@]*:([^@]*)@")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StoreConfig(_Model):
    """Where rows come from or go to: a SQLAlchemy URL, or a folder of Parquet/CSV files."""

    url: str = Field(repr=False, description="SQLAlchemy URL or folder path; secrets via ${VAR}")
    db_schema: str | None = Field(None, alias="schema", description="database schema")
    name: str | None = Field(
        None, pattern=NAME_PATTERN, description="name in asset keys (default: the database's)"
    )

    @property
    def is_folder(self) -> bool:
        return "://" not in self.url

    @property
    def masked_url(self) -> str:
        """The URL with its password replaced by ***, safe for logs, metadata and the UI."""
        return mask_url(self.url)

    @property
    def display_name(self) -> str:
        """The store's name in asset keys: `name:`, else the database's or folder's name."""
        if self.name:
            return self.name
        if self.is_folder:
            stem = Path(self.url).name
        else:
            url = make_url(self.url)
            stem = Path(url.database).stem if url.get_backend_name() == "sqlite" else url.database
        return re.sub(r"[^A-Za-z0-9_]", "_", stem or "default")

    @property
    def technology(self) -> str:
        """A short name of the store's technology, for Dagster's `kinds`."""
        if self.is_folder:
            return "parquet"
        backend = make_url(self.url).get_backend_name()
        return {"postgresql": "postgres", "mariadb": "mysql"}.get(backend, backend)


class TableConfig(_Model):
    """One table to copy, with its column selection and mapping."""

    name: str = Field(description="source table")
    columns: list[str] | None = Field(None, min_length=1, description="default: all columns")
    to: str | None = Field(None, description="destination table (default: same name)")
    rename: dict[str, str] = Field(default_factory=dict, description="source -> destination")
    incremental_column: str | None = None
    primary_key: list[str] | None = Field(None, min_length=1)
    write: Literal["append", "merge"] | None = None

    @property
    def destination_name(self) -> str:
        return self.to or self.name

    @model_validator(mode="after")
    def _check_mapping(self) -> "TableConfig":
        if self.columns is not None:
            duplicates = sorted({c for c in self.columns if self.columns.count(c) > 1})
            if duplicates:
                raise ValueError(f"columns listed twice: {', '.join(duplicates)}")
            unselected = [c for c in self.rename if c not in self.columns]
            if unselected:
                raise ValueError(
                    f"rename names columns that are not selected in `columns`: "
                    f"{', '.join(unselected)}"
                )
            for field, chosen in (
                ("incremental_column", [self.incremental_column] if self.incremental_column else []),
                ("primary_key", self.primary_key or []),
            ):
                missing = [c for c in chosen if c not in self.columns]
                if missing:
                    raise ValueError(
                        f"{field} names columns that are not selected in `columns`: "
                        f"{', '.join(missing)}"
                    )
        targets = list(self.rename.values())
        clashing = sorted({t for t in targets if targets.count(t) > 1})
        if clashing:
            raise ValueError(f"rename maps several columns to: {', '.join(clashing)}")
        if self.write == "merge" and not self.primary_key:
            raise ValueError("write: merge needs a primary_key")
        return self


class CopyJob(_Model):
    """A copy job: a source, a destination, a copy mode, and the tables to copy."""

    name: str = Field(pattern=NAME_PATTERN, description="the job; becomes the asset group")
    source: StoreConfig
    destination: StoreConfig
    mode: Literal["full", "incremental"] = "full"
    schedule: str | None = Field(None, description="cron expression")
    batch_rows: PositiveInt = Field(50_000, description="rows per Arrow batch in flight")
    tables: list[TableConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_job(self) -> "CopyJob":
        if self.schedule is not None and not is_valid_cron(self.schedule):
            raise ValueError(f"schedule {self.schedule!r} is not a 5-field cron expression")
        seen: dict[str, str] = {}
        for table in self.tables:
            destination = table.destination_name
            if destination in seen:
                raise ValueError(
                    f"tables {seen[destination]!r} and {table.name!r} are both copied to "
                    f"{destination!r}; give one of them another `to:`"
                )
            seen[destination] = table.name
        if self.mode == "incremental":
            missing = [t.name for t in self.tables if not t.incremental_column]
            if missing:
                raise ValueError(
                    f"mode: incremental needs an incremental_column on tables: {', '.join(missing)}"
                )
        return self

    def table(self, destination_name: str) -> TableConfig:
        for table in self.tables:
            if table.destination_name == destination_name:
                return table
        raise ConfigError(f"job {self.name!r} has no table {destination_name!r}")


def is_valid_cron(expression: str) -> bool:
    """True for the 5-field cron expressions that Dagster schedules accept."""
    return len(expression.split()) == 5 and croniter.is_valid(expression)


def mask_url(url: str) -> str:
    """Replace a URL's password with ***; folder paths are returned as they are."""
    if "://" not in url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return _URL_PASSWORD.sub(lambda m: m.group(0).replace(m.group(1), "***"), url)


def load_job(path: Path, base_dir: Path | None = None) -> CopyJob:
    """Read, expand and validate one job file. Relative paths resolve against `base_dir`."""
    tree = _read_yaml(path)
    job_name = tree.get("name") if isinstance(tree.get("name"), str) else None
    _refuse_literal_passwords(tree, path, job_name)
    expanded = _expand_env(tree, path, job_name, ())
    try:
        job = CopyJob.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc, path, expanded)) from None
    return _resolve_paths(job, base_dir or path.parent)


def job_files(jobs_dir: Path) -> list[Path]:
    return sorted(p for p in jobs_dir.iterdir() if p.suffix in JOB_FILE_SUFFIXES and p.is_file())


def load_jobs(jobs_dir: Path, base_dir: Path | None = None) -> list[CopyJob]:
    """Load every job file of a folder; job names must be unique across files."""
    if not jobs_dir.is_dir():
        raise ConfigError(f"{jobs_dir}: the copy jobs folder does not exist")
    jobs: list[CopyJob] = []
    files: dict[str, Path] = {}
    for path in job_files(jobs_dir):
        job = load_job(path, base_dir)
        if job.name in files:
            raise ConfigError(
                f"{path}: job {job.name!r}, field 'name': already used by {files[job.name]}"
            )
        files[job.name] = path
        jobs.append(job)
    return jobs


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the job file ({exc.strerror})") from None
    try:
        tree = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a job file must be a mapping with name, source, tables, ...")
    return tree


def _expand_env(node: Any, path: Path, job: str | None, loc: tuple[Any, ...]) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string value of the parsed tree."""
    if isinstance(node, dict):
        return {k: _expand_env(v, path, job, (*loc, k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, path, job, (*loc, i)) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        variable, default = match.group(1), match.group(2)
        value = os.environ.get(variable)
        if value is None:
            if default is None:
                raise ConfigError(
                    f"{_where(path, job, loc)}: environment variable {variable} is not set"
                )
            return default
        return value

    return _ENV_REFERENCE.sub(substitute, node)


def _refuse_literal_passwords(tree: dict[str, Any], path: Path, job: str | None) -> None:
    for store in ("source", "destination"):
        section = tree.get(store)
        url = section.get("url") if isinstance(section, dict) else None
        if not isinstance(url, str):
            continue
        match = _URL_PASSWORD.match(url)
        if match and _ENV_REFERENCE.sub("", match.group(1)):
            raise ConfigError(
                f"{_where(path, job, (store, 'url'))}: the URL holds a password written in the "
                f"file; put it in an environment variable and write ${{VARIABLE}} in its place"
            )


def _resolve_paths(job: CopyJob, base_dir: Path) -> CopyJob:
    """Make relative SQLite files and folders absolute, so every process finds the same ones."""
    changes = {}
    for store_field in ("source", "destination"):
        store: StoreConfig = getattr(job, store_field)
        resolved = _absolute_url(store.url, base_dir)
        if resolved != store.url:
            changes[store_field] = store.model_copy(update={"url": resolved})
    return job.model_copy(update=changes) if changes else job


def _absolute_url(url: str, base_dir: Path) -> str:
    if "://" not in url:
        return str((base_dir / url).resolve())
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return url
    if Path(database).is_absolute() or database.startswith("file:"):
        return url
    return parsed.set(database=str((base_dir / database).resolve())).render_as_string(
        hide_password=False
    )


def _describe_validation_error(exc: ValidationError, path: Path, tree: dict[str, Any]) -> str:
    job = tree.get("name") if isinstance(tree.get("name"), str) else None
    lines = [
        f"{_where(path, job, error['loc'], tree)}: {_plain(error['msg'])}" for error in exc.errors()
    ]
    return "\n".join(lines)


def _where(path: Path, job: str | None, loc: tuple[Any, ...], tree: Any = None) -> str:
    """`file: job 'x', table 'y', field 'z'` for an error at `loc` in the job file."""
    parts = [f"{path}: job {job!r}" if job else str(path)]
    loc = tuple(loc)
    if len(loc) >= 2 and loc[0] == "tables" and isinstance(loc[1], int):
        table_name = _table_name(tree, loc[1])
        parts.append(f"table {table_name!r}" if table_name else f"table #{loc[1] + 1}")
        loc = loc[2:]
    if loc:
        parts.append(f"field {'.'.join(str(p) for p in loc)!r}")
    return ", ".join(parts)


def _table_name(tree: Any, index: int) -> str | None:
    try:
        name = tree["tables"][index]["name"]
    except (KeyError, IndexError, TypeError):
        return None
    return name if isinstance(name, str) else None


def _plain(message: str) -> str:
    return message.removeprefix("Value error, ")


def iter_tables(jobs: list[CopyJob]) -> Iterator[tuple[CopyJob, TableConfig]]:
    for job in jobs:
        for table in job.tables:
            yield job, table
