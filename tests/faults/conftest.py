"""Collects the fault suite's tallies and prints one line per scenario family at the end."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from conftest import scratch_schema


@dataclass
class Tally:
    tried: int = 0
    passed: int = 0
    lost: int = 0
    duplicates: int = 0
    mismatches: int = 0
    extra: int = 0
    regressions: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self, name: str) -> str:
        return (
            f"{name:<22} {self.tried} cases tried, {self.passed} passed, rows lost = {self.lost}, "
            f"duplicates = {self.duplicates}, mismatches = {self.mismatches}, "
            f"extra rows = {self.extra}, watermark regressions = {self.regressions}"
        )


TALLIES: dict[str, Tally] = {}
Recorder = Callable[[str, str, dict[str, int] | None], None]


@pytest.fixture
def record_case() -> Recorder:
    """Record one case of a family: its invariant counts, or None when it could not finish."""

    def record(family: str, case: str, counts: dict[str, int] | None) -> None:
        tally = TALLIES.setdefault(family, Tally())
        tally.tried += 1
        if counts is None:
            tally.failures.append(f"{case}: did not finish")
            return
        for name, value in counts.items():
            setattr(tally, name, getattr(tally, name) + value)
        if any(counts.values()):
            tally.failures.append(f"{case}: {counts}")
        else:
            tally.passed += 1

    return record


@pytest.fixture
def pg_source_schema(pg_server: str) -> Iterator[str]:
    """A second scratch PostgreSQL schema, for a PostgreSQL source beside a PostgreSQL copy."""
    yield from scratch_schema(pg_server, "SCHEMA")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLIES:
        return
    terminalreporter.section("fault injection: destination equals source as of the watermark")
    for name, family in sorted(TALLIES.items()):
        terminalreporter.write_line(family.line(name))
        for failure in family.failures:
            terminalreporter.write_line(f"    {failure}")
