"""Negative controls: each protection the fault cases rely on, switched off in this process,
must make the fault checker report the loss. A protection whose control passes is not tested.

The breakages are monkeypatches of this test process (the runs here are in-process
`materialize` calls), never a switch in the product, and they are phrased against what a user
sees: a destination transaction that does not commit, a watermark that is not recorded, rows at
the watermark's value taken as already copied.
"""

import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from copyjob_dagster.defs import assets
from copyjob_dagster.defs.metadata import WATERMARK
from copyjob_dagster.engine import windows

from .test_faults import COUNTS, Case, _change_source, _make_case, _sum

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
    """The tie fingerprint always matches (from the first run on, so that the recorded one
    does too): the window starts after the watermark's value even when rows arrived at that
    value since. Replaced in every copyjob module that imported it, wherever it lives."""

    def same(*args: Any) -> tuple[int, str]:
        return 0, "0:same"

    original = windows.fingerprint
    for name, module in list(sys.modules.items()):
        if name.startswith("copyjob_dagster") and getattr(module, "fingerprint", None) is original:
            monkeypatch.setattr(module, "fingerprint", same)


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
