"""Reading job files: YAML, `${VAR}` expansion, literal passwords refused, relative paths
resolved, and every error on one line naming the file, the job, the table and the field.
"""

import difflib
import functools
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.engine import make_url

from copyjob_dagster.config.base import NAME_PATTERN, FieldProblem, model_at
from copyjob_dagster.config.endpoints import (
    ENV_REFERENCE,
    PATH_URLS,
    QUERY_PASSWORD,
    URL_PASSWORD,
    URL_SCHEME,
    StoreConfig,
)
from copyjob_dagster.config.models import JOB_FILE_SUFFIXES, JOB_NAME_PATTERN, CopyJob
from copyjob_dagster.config.pools import pool_limit_problems
from copyjob_dagster.errors import ConfigError

JobCheck = Callable[[CopyJob], Iterable[FieldProblem]]
"""A check of a whole job by a layer above (what its stores can do), reported like the file's."""


def read_job(
    path: Path,
    base_dir: Path | None = None,
    check: JobCheck | None = None,
    *,
    defer_secrets: bool = False,
) -> CopyJob:
    """Read, expand and validate one job file. Relative paths resolve against `base_dir`.

    With `defer_secrets`, a variable that is not set and stands for a URL's password is left
    for the store to read when it connects (`StoreConfig.with_secrets`): the job's definitions
    need no password, only its runs do.
    """
    return job_from_tree(read_yaml(path), path, base_dir or path.parent, check, defer_secrets)


def job_from_tree(
    tree: dict[str, Any],
    path: Path,
    base_dir: Path,
    check: JobCheck | None = None,
    defer_secrets: bool = False,
) -> CopyJob:
    """Expand and validate a job as read from `path` (a job file, or the attributes of a
    Component's defs.yaml); errors name `path`."""
    locate = functools.partial(_where, path, _job_name(tree), tree=tree)
    _refuse_literal_passwords(tree, locate)
    deferred: dict[str, list[str]] | None = {} if defer_secrets else None
    expanded = _expand_env(tree, (), locate, deferred)
    try:
        job = CopyJob.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc, path, expanded)) from None
    for problem in check(job) if check else ():
        raise ConfigError(f"{locate(problem.loc)}: {problem}")
    for store, variables in (deferred or {}).items():
        getattr(job, store).defer(variables)
    return _resolve_paths(job, base_dir)


def job_files(jobs_dir: Path) -> list[Path]:
    if not jobs_dir.is_dir():
        raise ConfigError(f"{jobs_dir}: the copy jobs folder does not exist")
    return sorted(p for p in jobs_dir.iterdir() if p.suffix in JOB_FILE_SUFFIXES and p.is_file())


def read_jobs(
    jobs_dir: Path, base_dir: Path | None = None, check: JobCheck | None = None
) -> list[CopyJob]:
    """Load every job file of a folder, and check the jobs against each other."""
    loaded = [(path, read_job(path, base_dir, check)) for path in job_files(jobs_dir)]
    problems = check_across_jobs(loaded)
    if problems:
        raise ConfigError("\n".join(problems))
    return [job for _, job in loaded]


def check_across_jobs(loaded: list[tuple[Path, CopyJob]]) -> list[str]:
    """Problems between job files: a job name used twice, a destination table written by two
    jobs, two different source stores under one name (their lineage nodes would merge), two
    connection limits for one source database."""
    problems = []
    names: dict[str, Path] = {}
    targets: dict[tuple[Any, ...], tuple[Path, CopyJob]] = {}
    sources: dict[str, tuple[Path, CopyJob]] = {}
    for path, job in loaded:
        where = f"{path}: job {job.name!r}"
        if names.setdefault(job.name, path) != path:
            problems.append(f"{where}, field 'name': already used by {names[job.name]}")
        for table in job.tables:
            target = (*job.destination.identity, table.destination_name)
            other_path, other = targets.setdefault(target, (path, job))
            if other is not job:
                problems.append(
                    f"{where}, table {table.name!r}, field 'to': job {other.name!r} "
                    f"({other_path.name}) also copies into {table.destination_name!r} at "
                    f"{job.destination.masked_url}"
                )
        name = job.source.display_name
        other_path, other = sources.setdefault(name, (path, job))
        if other.source.identity != job.source.identity:
            problems.append(
                f"{where}, field 'source.name': job {other.name!r} ({other_path.name}) reads "
                f"another database or schema also named {name!r}; give one of them a `name:`"
            )
    return problems + pool_limit_problems(loaded)


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe YAML loader that refuses a key given twice in one mapping. (LibYAML's parser
    where PyYAML has it: a job of hundreds of tables is read several times a run.)"""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: the base class refuses it
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (first on line {first.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the job file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the job file is not UTF-8 text") from None
    try:
        tree = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        context, problem = getattr(exc, "context", None), getattr(exc, "problem", None)
        problem = ", ".join(filter(None, [context, problem])) or str(exc).splitlines()[0]
        lines = text.splitlines()
        tabbed = mark is not None and mark.line < len(lines) and "\t" in lines[mark.line]
        if "\\t" in problem or "tab character" in problem or tabbed:
            problem += "; indent with spaces, YAML does not allow tabs"
        raise ConfigError(f"{path}:{where} invalid YAML: {problem}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a job file must be a mapping with name, source, tables, ...")
    return tree


def _job_name(tree: dict[str, Any]) -> str | None:
    name = tree.get("name")
    return name if isinstance(name, str) else None


def _expand_env(
    node: Any,
    loc: tuple[Any, ...],
    locate: Callable[[tuple[Any, ...]], str],
    deferred: dict[str, list[str]] | None = None,
) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string value of the parsed tree.

    Given `deferred`, an unset variable that is a store URL's password stays `${VAR}` and is
    listed there under the store's field name."""
    if isinstance(node, dict):
        return {k: _expand_env(v, (*loc, k), locate, deferred) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, (*loc, i), locate, deferred) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node
    secret_spans = _password_spans(node) if deferred is not None and _is_store_url(loc) else []
    if "${" in ENV_REFERENCE.sub("", node):
        raise ConfigError(
            f"{locate(loc)}: malformed environment reference; write ${{NAME}} or "
            f"${{NAME:-default}}, NAME made of letters, digits and _"
        )

    encoded = _url_encoded_spans(node)

    def substitute(match: re.Match[str]) -> str:
        variable, default = match.group(1), match.group(2)
        value = os.environ.get(variable)
        if value is None:
            if default is not None:
                value = default
            elif deferred is not None and any(a <= match.start() < b for a, b in secret_spans):
                deferred.setdefault(loc[0], []).append(variable)
                return match.group(0)
            else:
                raise ConfigError(f"{locate(loc)}: environment variable {variable} is not set")
        if any(start <= match.start() < end for start, end in encoded):
            return urllib.parse.quote(value, safe="")
        return value

    return ENV_REFERENCE.sub(substitute, node)


def _url_encoded_spans(template: str) -> list[tuple[int, int]]:
    """Where in a URL template a substituted value is percent-encoded: the user info and the
    query. A password is given raw in its variable, so `@`, `/`, `:`, `#`, `?` and `%` in it
    stay part of it instead of moving the host or hiding in a fragment (where masking would not
    find it). A `${VAR}` holding a whole URL is taken as it is."""
    shape = ENV_REFERENCE.sub(lambda m: "x" * len(m.group()), template)
    scheme = URL_SCHEME.match(shape)
    if scheme is None:
        return []
    authority_end = next(
        (i for i in range(scheme.end(), len(shape)) if shape[i] in "/?#"), len(shape)
    )
    spans = []
    at = shape.rfind("@", scheme.end(), authority_end)
    if at != -1:
        spans.append((scheme.end(), at))
    query = shape.find("?", scheme.end())
    if query != -1:
        spans.append((query, len(shape)))
    return spans


def _is_store_url(loc: tuple[Any, ...]) -> bool:
    return loc in (("source", "url"), ("destination", "url"))


def _password_spans(url: str) -> list[tuple[int, int]]:
    """Where a URL's passwords are written: after `user:` in its user info, and the values of
    its query's password parameters."""
    spans = [match.span(2) for match in QUERY_PASSWORD.finditer(url)]
    user_info = URL_PASSWORD.match(url)
    return [user_info.span(1), *spans] if user_info else spans


def _refuse_literal_passwords(
    tree: dict[str, Any], locate: Callable[[tuple[Any, ...]], str]
) -> None:
    """Refuse a password written in the file, also as a `${VAR:-default}` default."""
    for store in ("source", "destination"):
        section = tree.get(store)
        url = section.get("url") if isinstance(section, dict) else None
        if not isinstance(url, str):
            continue
        written = ENV_REFERENCE.sub(lambda m: m.group(2) or "", url)
        in_user_info = URL_PASSWORD.match(written)
        in_query = [m.group(2) for m in QUERY_PASSWORD.finditer(written)]
        if (in_user_info and in_user_info.group(1)) or any(in_query):
            raise ConfigError(
                f"{locate((store, 'url'))}: the URL holds a password written in the file; put "
                f"the password in an environment variable and write ${{VARIABLE}} in its place, "
                f"e.g. user:${{DB_PASSWORD}}@host"
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
    if (
        parsed.get_backend_name() not in PATH_URLS
        or parsed.host
        or database in (None, "", ":memory:")
    ):
        return url
    if Path(database).is_absolute() or database.startswith("file:"):
        return url
    return parsed.set(database=str((base_dir / database).resolve())).render_as_string(
        hide_password=False
    )


_MESSAGES = {
    "missing": "required, but missing",
    "string_too_short": "must not be empty",
    "too_short": "must list at least one item",
}
_PATTERN_RULES = {
    NAME_PATTERN: "must start with a letter or _ and hold only letters, digits and _",
    JOB_NAME_PATTERN: "must be words of letters and digits joined by single underscores, "
    "starting with a letter, e.g. shop_to_warehouse",
}
_KINDS = {
    str: "text",
    int: "a number",
    float: "a number",
    bool: "true/false",
    list: "a list",
    dict: "a mapping",
    type(None): "nothing",
}


def _describe_validation_error(exc: ValidationError, path: Path, tree: dict[str, Any]) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        problem = error.get("ctx", {}).get("error")
        if isinstance(problem, FieldProblem):
            loc = (*loc, *problem.loc)
        lines.append(f"{_where(path, _job_name(tree), loc, tree)}: {_message(error)}")
    return "\n".join(lines)


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_field(tuple(error["loc"]))
    if kind in ("model_type", "dict_type"):
        return f"should be a mapping of `key: value` lines, got {_kind_of(error['input'])}"
    if kind == "string_pattern_mismatch":
        return _PATTERN_RULES[error["ctx"]["pattern"]]
    if kind.endswith("_type"):
        return f"{_plain(error['msg'])}, got {_kind_of(error['input'])}"
    return _MESSAGES.get(kind) or _plain(error["msg"])


def _unknown_field(loc: tuple[Any, ...]) -> str:
    parent = model_at(CopyJob, loc[:-1])
    known = [field.alias or name for name, field in parent.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"the fields are {', '.join(known)}"
    return f"unknown field; {hint}"


def _kind_of(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _plain(message: str) -> str:
    return message.removeprefix("Value error, ").replace("Input should be", "should be")


def _where(path: Path, job: str | None, loc: tuple[Any, ...], tree: Any = None) -> str:
    """`file: job 'x', table 'y', field 'z'` for an error at `loc` in the job file."""
    parts = [f"{path}: job {job!r}" if job else str(path)]
    if len(loc) >= 2 and loc[0] == "tables" and isinstance(loc[1], int):
        table_name = _table_name(tree, loc[1])
        parts.append(f"table {table_name!r}" if table_name else f"table #{loc[1] + 1}")
        loc = loc[2:]
    item = None
    if loc and isinstance(loc[-1], int):
        item, loc = loc[-1], loc[:-1]
    if loc:
        parts.append(f"field {'.'.join(str(p) for p in loc if p != '[key]')!r}")
    if item is not None:
        parts.append(f"item {item + 1}")
    return ", ".join(parts)


def _table_name(tree: Any, index: int) -> str | None:
    try:
        name = tree["tables"][index]["name"]
    except (KeyError, IndexError, TypeError):
        return None
    return name if isinstance(name, str) else None
