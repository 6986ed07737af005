"""Tallies the suite prints at its end: bad inputs and leaked secrets, and fault cases.

A test records what it saw in its report's `user_properties`; the session adds the reports up
as they arrive. So the tallies also add up when pytest-xdist runs the tests in worker
processes: the reports, properties included, reach the controller, which prints the summary.
"""

from dataclasses import dataclass, field
from typing import Any

import pytest

BAD_INPUTS = "copyjob_bad_inputs"
FAULT_CASE = "copyjob_fault_case"


@dataclass
class BadInputTally:
    """What the bad-input and security tests saw."""

    tried: int = 0
    refused: int = 0
    secrets_leaked: int = 0
    canaries_lost: int = 0
    checks: int = 0
    failures: list[str] = field(default_factory=list)

    def refusal(self, case: str, clear: bool) -> None:
        """One bad input tried: refused clearly (its message names where, no traceback) or not."""
        self.tried += 1
        self.refused += clear
        if not clear:
            self.failures.append(f"{case}: not refused clearly")

    def leaks(self, place: str, count: int) -> None:
        self.checks += 1
        self.secrets_leaked += count
        if count:
            self.failures.append(f"{place}: the secret appears {count} time(s)")

    def canaries(self, case: str, lost: int) -> None:
        self.checks += 1
        self.canaries_lost += lost
        if lost:
            self.failures.append(f"{case}: {lost} canary table(s) lost")

    def add(self, other: "BadInputTally") -> None:
        for name in ("tried", "refused", "secrets_leaked", "canaries_lost", "checks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures

    def line(self) -> str:
        return (
            f"{self.tried} bad inputs tried, {self.refused} refused clearly, "
            f"secrets leaked {self.secrets_leaked}, canary tables lost {self.canaries_lost}"
        )


@dataclass
class FaultTally:
    """One family of fault cases: the invariant's counts summed over its cases."""

    tried: int = 0
    passed: int = 0
    lost: int = 0
    duplicates: int = 0
    mismatches: int = 0
    extra: int = 0
    regressions: int = 0
    stale: int = 0
    advanced: int | None = None  # watermarks a killed run moved, where a family counts them
    failures: list[str] = field(default_factory=list)

    def record(self, case: str, counts: dict[str, int] | None) -> None:
        """One case: its invariant counts, or None when it could not finish."""
        self.tried += 1
        if counts is None:
            self.failures.append(f"{case}: did not finish")
            return
        for name, value in counts.items():
            setattr(self, name, (getattr(self, name) or 0) + value)
        if any(counts.values()):
            self.failures.append(f"{case}: {counts}")
        else:
            self.passed += 1

    def line(self, name: str) -> str:
        return (
            f"{name:<22} {self.tried} cases tried, {self.passed} passed, rows lost = {self.lost}, "
            f"duplicates = {self.duplicates}, mismatches = {self.mismatches}, "
            f"extra rows = {self.extra}, watermark regressions = {self.regressions}, "
            f"watermarks missing or short of the source = {self.stale}"
            + ("" if self.advanced is None else f", advanced by a killed run = {self.advanced}")
        )


class SessionTallies:
    """The session's sums, fed by test reports."""

    def __init__(self) -> None:
        self.bad_inputs = BadInputTally()
        self.faults: dict[str, FaultTally] = {}

    def add(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == BAD_INPUTS:
                self.bad_inputs.add(BadInputTally(**value))
            elif name == FAULT_CASE:
                family, case, counts = value
                self.faults.setdefault(family, FaultTally()).record(case, counts)

    def summarize(self, terminal: pytest.TerminalReporter) -> None:
        if self.bad_inputs.tried or self.bad_inputs.checks:
            terminal.section("bad input and security")
            terminal.write_line(self.bad_inputs.line())
            for failure in self.bad_inputs.failures:
                terminal.write_line(f"    {failure}")
        if self.faults:
            terminal.section("fault injection: destination equals source as of the watermark")
            for name, family in sorted(self.faults.items()):
                terminal.write_line(family.line(name))
                for failure in family.failures:
                    terminal.write_line(f"    {failure}")


def record(item: pytest.Item, name: str, value: Any) -> None:
    """Add a tally's entry to the test's report."""
    item.user_properties.append((name, value))
