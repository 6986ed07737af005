"""Negative controls: each protection the fault cases rely on, switched off, must make the
fault checker report the loss. A protection whose control passes is not tested.

The breakages are monkeypatches of this test process (for in-process `materialize` calls), or
test-only hooks installed in a fault run's own process (tests/faults/hooks.py), never a switch
in the product. They are phrased against what a user sees: a destination transaction that does
not commit, a watermark that is not recorded, rows at the watermark's value taken as already
copied, two runs of one table at once, a full copy written straight into the live table, a
split's parts committed one by one, old versions never closed, a mass deletion let through.
"""

import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from copyjob_dagster.defs import assets
from copyjob_dagster.defs.metadata import WATERMARK
from copyjob_dagster.engine import deletions, windows
from copyjob_dagster.stores import parquet_changes

from .test_faults import (
    COUNTS,
    Case,
    _change_source,
    _make_case,
    _sum,
    _verify_versions,
    kill_a_full_copy,
    overlapping_runs,
)

Breakage = Callable[[pytest.MonkeyPatch, Case], None]


def _destination_never_commits(monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    """Every transaction on the destination rolls back where it would commit; the run goes on
    as if it had committed (what recording the watermark before the commit risks)."""
    destination = sa.engine.make_url(case.destination.url).database
    commit = sa.engine.Transaction.commit

    def rolled_back(self: sa.engine.Transaction) -> None:
        if self.connection.engine.url.database == destination:
            return self.rollback()
        return commit(self)

    monkeypatch.setattr(sa.engine.Transaction, "commit", rolled_back)


def _nothing_copied_nor_recorded(monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    """What the old checker passed as 'rows lost = 0': nothing written, no watermark, from
    the first run on (an empty destination equals the rows at or below no watermark)."""
    _destination_never_commits(monkeypatch, case)
    metadata = assets.copy_metadata

    def without_watermark(*args: Any) -> dict[str, Any]:
        return {k: v for k, v in metadata(*args).items() if not k.startswith(WATERMARK)}

    monkeypatch.setattr(assets, "copy_metadata", without_watermark)


def _rows_at_the_watermark_taken_as_copied(monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    """The rows at the watermark's value are always taken as the ones already copied: the
    window starts after the value even when rows arrived at it since."""

    def unchanged(*args: Any) -> bool:
        return True

    monkeypatch.setattr(windows, "unchanged_at", unchanged)


# (breakage, the count that must then show the loss, whether the first run is broken too)
CONTROLS = [
    pytest.param(
        _nothing_copied_nor_recorded, "stale", True, id="checker-nothing-copied-or-recorded"
    ),
    pytest.param(_destination_never_commits, "lost", False, id="watermark-recorded-after-commit"),
    pytest.param(_rows_at_the_watermark_taken_as_copied, "lost", True, id="tie-fingerprint"),
]


@pytest.mark.parametrize(("breakage", "reported", "from_start"), CONTROLS)
def test_the_checker_reports_the_loss_without_the_protection(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    breakage: Breakage,
    reported: str,
    from_start: bool,
) -> None:
    case = _make_case(tmp_path, request, "sqlite", "sqlite", "merge")
    rng = random.Random("controls")
    if from_start:
        breakage(monkeypatch, case)
    _change_source(case, rng, 0)
    case.run_until_success()
    if not from_start:
        assert _sum([case.verify()]) == dict.fromkeys(COUNTS, 0)  # whole before the breakage
        breakage(monkeypatch, case)
    _change_source(case, rng, 1)  # new rows, the first tied with the watermark, and updates
    case.run_until_success()
    counts = case.verify()
    assert counts[reported] > 0, counts


# (hooks in both runs' processes, the count that must then show it, the count that must not)
OVERLAP_CONTROLS = [
    # The second run copies from the same watermark and records first; the first then writes
    # its older snapshot over it, and the guard keeps it from recording: rows lost and stale.
    pytest.param(("no-lock",), "lost", "regressions", id="copy-lock"),
    # The same, and the first run records its older watermark: it goes backwards.
    pytest.param(("no-lock", "no-guard"), "regressions", None, id="overtaken-run-guard"),
]


@pytest.mark.parametrize(("breakages", "reported", "held"), OVERLAP_CONTROLS)
def test_overlapping_runs_report_the_loss_without_the_protection(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    breakages: tuple[str, ...],
    reported: str,
    held: str | None,
) -> None:
    case = _make_case(tmp_path, request, "sqlite", "sqlite", "merge")
    _, second = overlapping_runs(case, random.Random("overlap-controls"), 0, breakages)
    assert second.noted("waiting") is None  # nothing made the second run wait
    case.run_until_success()
    counts = case.verify()
    print(counts)
    assert counts[reported] > 0, counts
    if held is not None:  # the protection left in place still holds its own count at 0
        assert counts[held] == 0, counts


def test_full_copy_reports_the_loss_without_the_staging_swap(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Written straight into the live table, batch by batch, a killed full copy leaves the
    previous copy gone and part of the new one."""
    counts = kill_a_full_copy(tmp_path, request, "mariadb", hooks=("no-staging",))
    print(counts)
    assert counts["lost"] > 0, counts


def test_split_copy_reports_parts_alone_without_its_one_transaction(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Each part committed on its own: killed in the second of three parts (batch 15 of 30),
    the initial load leaves the first part alone where the protected case leaves nothing."""
    case = _make_case(tmp_path, request, "postgres", "mariadb", "merge", ", split: {parts: 3}")
    _change_source(case, random.Random("split"), 0)
    process = case.start("batch", 15, hooks=("parts-alone",))
    assert process.wait(timeout=120) == -signal.SIGKILL, process.errors()
    alone = case.destination.rows()
    print(f"{len(alone)} rows of some parts alone")
    assert 0 < len(alone) < len(case.source.rows())


def test_scd2_reports_duplicates_without_closing_old_versions(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Parquet SCD2 table whose older versions are never closed: each updated key keeps two
    current versions, which the SCD2 checker counts."""
    monkeypatch.setattr(parquet_changes, "_close_versions", lambda *args: None)
    case = _make_case(tmp_path, request, "sqlite", "parquet", "scd2")
    rng = random.Random("scd2-controls")
    seen: set[tuple[int, int]] = set()
    outcomes = []
    for round_number in range(2):
        _change_source(case, rng, round_number)
        case.run_until_success()
        outcomes.append(_verify_versions(case, seen))
    counts = _sum(outcomes)
    print(counts)
    assert counts["duplicates"] > 0, counts


def test_mass_deletion_goes_through_without_the_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tests/test_changes.py's guard case with the guard switched off: the run deletes 6 of
    the destination's 10 rows, where the guard refused and left it as it was."""
    from test_changes import Table, _plain

    monkeypatch.setattr(deletions, "_guard", lambda *args: None)
    table = Table(tmp_path, {"url": str(tmp_path / "lake")}, deletes="hard", max_delete_share=0.5)
    table.put(*range(1, 11))
    table.copy()
    before = sorted(map(_plain, table.rows()))
    table.delete(*range(1, 7))
    table.put(20)
    result = table.copy()  # not refused
    after = sorted(map(_plain, table.rows()))
    print(f"{result.deletions.deleted} rows deleted")
    assert result.deletions.deleted == 6
    assert len(set(before) - set(after)) == 6
