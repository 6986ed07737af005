"""Fault cases record their invariant's counts; tests/tallies.py sums and prints them."""

from collections.abc import Callable, Iterator

import pytest
import tallies
from conftest import scratch_schema

Recorder = Callable[[str, str, dict[str, int] | None], None]


@pytest.fixture
def record_case(request: pytest.FixtureRequest) -> Recorder:
    """Record one case of a family: its invariant counts, or None when it could not finish."""

    def record(family: str, case: str, counts: dict[str, int] | None) -> None:
        tallies.record(request.node, tallies.FAULT_CASE, (family, case, counts))

    return record


@pytest.fixture
def pg_source_schema(pg_server: str) -> Iterator[str]:
    """A second scratch PostgreSQL schema, for a PostgreSQL source beside a PostgreSQL copy."""
    yield from scratch_schema(pg_server, "SCHEMA")
