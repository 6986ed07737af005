"""A text incremental column whose source orders strings unlike the destination.

The source picks a window by its own collation (MariaDB's case-insensitive `utf8mb4_general_ci`,
PostgreSQL ICU `en-US`: `a1 < B2`); the destination compares by another (PostgreSQL `C`,
Arrow's byte order: `B2 < a1`). What a run removes or closes at the destination must follow the
rows the source's window returned, never the destination's own order: otherwise `append` deletes
rows copied before, and `scd2` leaves two current versions of a key.
"""

import random
import string
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa
from deltalake import DeltaTable

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import Watermark, copy_table

FAMILY = "F6 string cursor order"
CURRENT = "_copyjob_is_current"
VALID_FROM = "_copyjob_valid_from"
# The column type of the source's `code`, by source kind: its collation orders the window.
SOURCE_TYPES = {
    "mariadb": "VARCHAR(20)",  # the server's utf8mb4_general_ci: case-insensitive
    "postgres-c": 'VARCHAR(20) COLLATE "C"',
    "postgres-icu": 'VARCHAR(20) COLLATE "en-US-x-icu"',
}


class Codes:
    """A source table `codes(id, code)` copied incrementally by `code` to a destination."""

    def __init__(
        self,
        request: pytest.FixtureRequest,
        tmp_path: Path,
        source: str,
        destination: str,
        write: str,
    ) -> None:
        self.source = _endpoint(request, tmp_path, source, "source")
        self.destination = _endpoint(request, tmp_path, destination, "destination")
        self._qualified = ".".join(p for p in (self.source.get("schema"), "codes") if p)
        self._execute(
            f"CREATE TABLE {self._qualified} (id INT PRIMARY KEY, code {SOURCE_TYPES[source]})"
        )
        self.job = CopyJob.model_validate(
            {
                "name": "codes",
                "mode": "incremental",
                "source": self.source,
                "destination": self.destination,
                "tables": [
                    {
                        "name": "codes",
                        "incremental_column": "code",
                        "primary_key": ["id"],
                        "write": write,
                    }
                ],
            }
        )
        self.watermark: Watermark | None = None

    def _execute(self, statement: str, rows: list[dict[str, Any]] | None = None) -> list[Any]:
        engine = sa.create_engine(self.source["url"])
        try:
            with engine.begin() as conn:
                result = conn.execute(sa.text(statement), rows or {})
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    def put(self, *rows: tuple[int, str]) -> None:
        """Insert rows, or change the code of rows that are there, in one transaction."""
        values = [{"id": key, "code": code} for key, code in rows]
        engine = sa.create_engine(self.source["url"])
        try:
            with engine.begin() as conn:
                delete = f"DELETE FROM {self._qualified} WHERE id = :id"
                conn.execute(sa.text(delete), values)
                insert = f"INSERT INTO {self._qualified} (id, code) VALUES (:id, :code)"
                conn.execute(sa.text(insert), values)
        finally:
            engine.dispose()

    def in_source_order(self, codes: list[str]) -> list[str]:
        """The codes sorted by the source column's own collation."""
        self._execute(
            f"CREATE TABLE {self._qualified}_order AS "
            f"SELECT code FROM {self._qualified} WHERE 1 = 0"
        )
        try:
            self._execute(
                f"INSERT INTO {self._qualified}_order (code) VALUES (:code)",
                [{"code": c} for c in codes],
            )
            return [
                r[0]
                for r in self._execute(f"SELECT code FROM {self._qualified}_order ORDER BY code")
            ]
        finally:
            self._execute(f"DROP TABLE {self._qualified}_order")

    def copy(self, start: Watermark | None = None) -> None:
        """Copy from the recorded watermark (or `start`: a rerun), and record the new one."""
        result = copy_table(self.job, self.job.tables[0], start or self.watermark)
        self.watermark = result.watermark

    def source_rows(self) -> set[tuple[int, str]]:
        return {tuple(r) for r in self._execute(f"SELECT id, code FROM {self._qualified}")}

    def rows(self) -> list[dict[str, Any]]:
        url = self.destination["url"]
        if url.startswith("delta://"):
            return (
                DeltaTable(url.removeprefix("delta://") + "/codes").to_pyarrow_table().to_pylist()
            )
        if "://" not in url:
            return ds.dataset(Path(url) / "codes", format="parquet").to_table().to_pylist()
        engine = sa.create_engine(url)
        try:
            table = sa.Table(
                "codes", sa.MetaData(), autoload_with=engine, schema=self.destination.get("schema")
            )
            with engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(sa.select(table))]
        finally:
            engine.dispose()

    def appended(self) -> dict[str, int]:
        """The append invariant: every source row there once; no row the source never had."""
        copied = Counter((r["id"], r["code"]) for r in self.rows())
        expected = self.source_rows()
        return {
            "lost": len(expected - copied.keys()),
            "duplicates": sum(n - 1 for n in copied.values()),
            "mismatches": 0,
            "extra": len(copied.keys() - expected),
            "regressions": 0,
        }

    def versioned(self, seen: set[tuple[int, str]]) -> dict[str, int]:
        """The SCD2 invariant: each version once, the current ones equal to the source."""
        rows = self.rows()
        versions = Counter((r["id"], r[VALID_FROM]) for r in rows)
        current = Counter((r["id"], r["code"]) for r in rows if r[CURRENT])
        source = self.source_rows()
        return {
            "lost": len(seen - versions.keys()),
            "duplicates": sum(n - 1 for n in versions.values())
            + sum(n - 1 for n in Counter(k for k, _ in current).values()),
            "mismatches": len(source - current.keys()),
            "extra": len(versions.keys() - seen) + len(current.keys() - source),
            "regressions": 0,
        }


def _endpoint(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, role: str
) -> dict[str, Any]:
    if kind == "parquet":
        return {"url": str(tmp_path / "lake")}
    if kind == "delta":
        return {"url": f"delta:///{tmp_path / 'delta'}"}
    if kind == "mariadb":
        return {"url": request.getfixturevalue("mysql_url")}
    schema = request.getfixturevalue("pg_source_schema" if role == "source" else "pg_schema")
    return {"url": request.getfixturevalue("pg_server"), "schema": schema}


APPEND_PAIRS = [
    ("mariadb", "postgres"),
    ("mariadb", "parquet"),
    ("mariadb", "delta"),
    ("postgres-c", "mariadb"),
    ("postgres-icu", "postgres"),
]


@pytest.mark.parametrize(
    ("source", "destination"), APPEND_PAIRS, ids=[f"{s}-to-{d}" for s, d in APPEND_PAIRS]
)
def test_append_by_a_text_cursor_keeps_rows_the_destination_orders_differently(
    request: pytest.FixtureRequest, tmp_path: Path, record_case: Any, source: str, destination: str
) -> None:
    codes = Codes(request, tmp_path, source, destination, "append")
    outcome = None
    try:
        # Each code above the one before in the source's order, not in the destination's.
        first, second, third = ("B2", "a1", "b3") if source == "postgres-c" else ("a1", "B2", "C3")
        codes.put((1, first), (2, second))
        codes.copy()
        before = codes.watermark
        codes.put((3, third))
        codes.copy()
        codes.copy(before)  # the same window again: a rerun after a kill
        outcome = codes.appended()
    finally:
        record_case(FAMILY, f"append-{source}-to-{destination}", outcome)
    assert outcome == dict.fromkeys(outcome, 0)


@pytest.mark.parametrize(
    ("source", "destination"), APPEND_PAIRS[:2], ids=[f"{s}-to-{d}" for s, d in APPEND_PAIRS[:2]]
)
def test_append_of_random_mixed_case_codes_in_source_order(
    request: pytest.FixtureRequest, tmp_path: Path, record_case: Any, source: str, destination: str
) -> None:
    """200 random 8-character codes, inserted in increasing source order over 5 runs."""
    codes = Codes(request, tmp_path, source, destination, "append")
    rng = random.Random(f"codes-{source}-{destination}")
    alphabet = string.ascii_letters + string.digits
    drawn = list({"".join(rng.choices(alphabet, k=8)) for _ in range(200)})
    ordered = codes.in_source_order(drawn)
    outcome = None
    try:
        for run in range(5):
            part = ordered[run * 40 : (run + 1) * 40]
            codes.put(*((run * 40 + i + 1, code) for i, code in enumerate(part)))
            codes.copy()
        outcome = codes.appended()
    finally:
        record_case(FAMILY, f"append-random-{source}-to-{destination}", outcome)
    assert outcome == dict.fromkeys(outcome, 0)


SCD2_PAIRS = [
    ("mariadb", "postgres"),
    ("mariadb", "parquet"),
    ("postgres-icu", "postgres"),
    ("postgres-c", "mariadb"),
]


@pytest.mark.parametrize(
    ("source", "destination"), SCD2_PAIRS, ids=[f"{s}-to-{d}" for s, d in SCD2_PAIRS]
)
def test_scd2_by_a_text_cursor_closes_the_version_a_key_leaves(
    request: pytest.FixtureRequest, tmp_path: Path, record_case: Any, source: str, destination: str
) -> None:
    codes = Codes(request, tmp_path, source, destination, "scd2")
    low, high = ("B2", "a1") if source == "postgres-c" else ("a1", "B2")
    outcome = None
    try:
        codes.put((1, low), (2, "0"))
        codes.copy()
        codes.put((1, high))  # the key moves up in the source's order, down in the other
        codes.copy()
        outcome = codes.versioned({(1, low), (1, high), (2, "0")})
    finally:
        record_case(FAMILY, f"scd2-{source}-to-{destination}", outcome)
    assert outcome == dict.fromkeys(outcome, 0)
