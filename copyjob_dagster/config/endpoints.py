"""Where rows come from and go to: a SQLAlchemy URL or a folder, its timeouts, its name in
asset keys, and the URL masked for anything a person may see."""

import os
import re
import urllib.parse
from pathlib import Path

from pydantic import Field, PrivateAttr, field_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from copyjob_dagster.config.base import NAME_PATTERN, StrictModel, Text, key_part
from copyjob_dagster.errors import ConfigError

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

URL_PASSWORD = re.compile(r"^[A-Za-z0-9+._-]+://[^:/@]*:([^@]*)@")
URL_SCHEME = re.compile(r"^[A-Za-z0-9+._-]+://")
QUERY_PASSWORD = re.compile(r"([?&][^=&#]*password[^=&#]*=)([^&#]*)", re.IGNORECASE)
DEFAULT_CONNECT_TIMEOUT = 10  # seconds
# URLs whose database is a path, relative after `///`: SQLite files and Delta folders (and the
# prefix of `delta+s3://` and `parquet+s3://`, whose last part names the store in asset keys).
PATH_URLS = ("sqlite", "delta", "parquet")


class StoreConfig(StrictModel):
    """Where rows come from or go to: a SQLAlchemy URL, or a folder of Parquet/CSV files."""

    url: Text = Field(repr=False, description="SQLAlchemy URL or folder path; secrets via ${VAR}")
    db_schema: Text | None = Field(None, alias="schema", description="database schema")
    name: str | None = Field(
        None, pattern=NAME_PATTERN, description="name in asset keys (default: the database's)"
    )
    connect_timeout: int = Field(
        DEFAULT_CONNECT_TIMEOUT,
        ge=2,
        le=3600,
        strict=True,
        description="seconds to wait for a database connection, TLS and login included",
    )
    statement_timeout: float | None = Field(
        None,
        gt=0,
        description="seconds any one statement may run (PostgreSQL, MySQL/MariaDB); a full "
        "copy reads and loads a table in one statement each; default: no limit",
    )
    # Password variables that were not set when the job file loaded; still `${VAR}` in `url`.
    _unset_variables: tuple[str, ...] = PrivateAttr(())

    def defer(self, variables: list[str]) -> None:
        """Leave these password variables (unset, still `${VAR}` in the URL) to `with_secrets`;
        called by the loader on the model it has just built."""
        self._unset_variables = tuple(dict.fromkeys(variables))

    @property
    def unset_variables(self) -> tuple[str, ...]:
        return self._unset_variables

    def with_secrets(self, role: str) -> "StoreConfig":
        """The store with its deferred password variables read from the environment now, as a
        run's process connects; the error names the variable that is still missing."""
        if not self._unset_variables:
            return self
        missing = [name for name in self._unset_variables if name not in os.environ]
        if missing:
            raise ConfigError(
                f"{role} {self.masked_url}: environment variable {missing[0]} is not set; it "
                f"holds the {role}'s password: export it where the run executes (for runs "
                f"launched from the UI or a schedule, in the environment of `copyjob ui` or the "
                f"Dagster code location)"
            )
        # Encoded as the loader encodes a value in the user info or the query (`loading.py`).
        url = ENV_REFERENCE.sub(
            lambda m: (
                urllib.parse.quote(os.environ[m[1]], safe="")
                if m[1] in self._unset_variables
                else m[0]
            ),
            self.url,
        )
        resolved = self.model_copy(update={"url": url})
        resolved._unset_variables = ()
        return resolved

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        """The URL's form; whether a store family serves it is the stores' to say."""
        if "://" not in url:
            return url
        try:
            make_url(url)
        except (ArgumentError, ValueError):
            # The URL is not echoed: it may hold a password from the environment.
            raise ValueError(
                "not a valid database URL; write dialect+driver://user:${PASSWORD}@host:port/"
                "database, or a folder path"
            ) from None
        return url

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
            stem = url.database
            if stem and url.get_backend_name() in PATH_URLS:
                stem = Path(stem).stem
        return key_part(stem or "default")

    @property
    def technology(self) -> str:
        """A short name of the store's technology, for Dagster's `kinds`."""
        if self.is_folder:
            return "parquet"
        backend = make_url(self.url).get_backend_name()
        return {"postgresql": "postgres", "mariadb": "mysql"}.get(backend, backend)

    @property
    def identity(self) -> tuple[str | int | None, ...]:
        """What makes two configs the same store, whoever logs in to it."""
        if self.is_folder:
            return ("folder", self.url)
        url = make_url(self.url)
        return (url.get_backend_name(), url.host, url.port, url.database, self.db_schema)


class SourceConfig(StoreConfig):
    """The store rows come from, and how many of its tables may be copied at once."""

    max_connections: int | None = Field(
        None, ge=1, strict=True, description="tables of this database copied at once (a pool)"
    )


def mask_url(url: str) -> str:
    """Replace a URL's passwords (user info and query) with ***; folder paths are unchanged."""
    if "://" not in url:
        return url
    try:
        url = make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        url = URL_PASSWORD.sub(lambda m: f"{url[m.start() : m.start(1)]}***@", url)
    return QUERY_PASSWORD.sub(r"\1***", url)
