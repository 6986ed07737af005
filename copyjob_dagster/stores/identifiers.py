"""The names a database keeps: those it would cut, reject, or take for another are refused.

PostgreSQL cuts a name longer than 63 bytes without an error, so two long names can become one;
MySQL and MariaDB refuse names over 64 characters, characters beyond U+FFFF (emoji) and a
trailing space, and compare column names without regard to case, as SQLite does. A copy checks
its destination names first, so that it stops with a message before anything is written.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

HASH_CHARACTERS = 8


@dataclass(frozen=True)
class NameRules:
    """What one database family accepts as a table or column name."""

    database: str  # as people name it, for messages
    limit: int | None = None
    in_bytes: bool = False
    case_insensitive_columns: bool = False
    case_insensitive_tables: bool = False
    basic_plane_only: bool = False
    trailing_space: bool = True

    def length(self, name: str) -> int:
        return len(name.encode()) if self.in_bytes else len(name)

    def fit(self, name: str) -> str:
        """`name`, or a prefix of it and a hash of the whole, within the length limit: for the
        names copyjob makes up (staging tables, constraints) from a user's table name."""
        if self.limit is None or self.length(name) <= self.limit:
            return name
        digest = hashlib.sha1(name.encode()).hexdigest()[:HASH_CHARACTERS]
        prefix = name
        while self.length(prefix) > self.limit - HASH_CHARACTERS - 1:
            prefix = prefix[:-1]
        return f"{prefix}_{digest}"

    def problem(self, name: str) -> str | None:
        """Why the database would not keep `name` as it is, or None."""
        if self.limit is not None and self.length(name) > self.limit:
            unit = "bytes" if self.in_bytes else "characters"
            return f"is {self.length(name)} {unit} long, and {self.database} keeps {self.limit}"
        if self.basic_plane_only and any(ord(c) > 0xFFFF for c in name):
            return f"holds characters beyond U+FFFF (such as emoji), which {self.database} refuses"
        if not self.trailing_space and name.endswith(" "):
            return f"ends with a space, which {self.database} refuses"
        return None

    def clashes(self, names: Iterable[str]) -> list[tuple[str, str]]:
        """Pairs of column names that the database takes for one name."""
        if not self.case_insensitive_columns:
            return []
        seen: dict[str, str] = {}
        return [
            (seen[name.casefold()], name)
            for name in names
            if seen.setdefault(name.casefold(), name) != name
        ]

    def refusals(
        self, table: str, columns: Iterable[str], other_tables: Iterable[str] = ()
    ) -> list[str]:
        """Every problem of a table's name and column names, each with its remedy; a table of
        `other_tables` that the database takes for `table` is one."""
        columns = list(columns)
        problems = []
        if problem := self.problem(table):
            problems.append(f"table name {table!r} {problem}; set `to:` to another name")
        if self.case_insensitive_tables:
            problems += [
                f"table {table!r} would replace table {other!r}, which {self.database} takes "
                f"for the same name; set `to:` to another name"
                for other in other_tables
                if other != table and other.casefold() == table.casefold()
            ]
        problems += [
            f"column name {column!r} {problem}; give it another name with `rename:`"
            for column in columns
            if (problem := self.problem(column))
        ]
        problems += [
            f"columns {first!r} and {second!r} differ only in case, which {self.database} does "
            f"not tell apart in column names; give one another name with `rename:`"
            for first, second in self.clashes(columns)
        ]
        return problems


POSTGRESQL = NameRules("PostgreSQL", limit=63, in_bytes=True)
MYSQL = NameRules(
    "MySQL/MariaDB",
    limit=64,
    case_insensitive_columns=True,
    basic_plane_only=True,
    trailing_space=False,
)
SQLITE = NameRules("SQLite", case_insensitive_columns=True, case_insensitive_tables=True)
