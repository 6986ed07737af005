"""Watermarks tampered with in the instance, beyond tests/test_watermark.py: a value in the
future, SQL text in a string watermark, and a type that is not the column's. Each is parsed and
bound as a parameter of the column's type, or refused; none becomes SQL text or changes data."""

import sqlite3
from pathlib import Path

import dagster as dg
import pytest

from copyjob_dagster.config import CopyJob
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs
from copyjob_dagster.defs.metadata import WATERMARK, WATERMARK_TYPE

KEY = dg.AssetKey(["tampered", "events"])


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO events VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "z")])
    return path


def _materialize(source: Path, destination: Path, column: str, kind: str, text: str):
    job = CopyJob.model_validate(
        {
            "name": "tampered",
            "mode": "incremental",
            "source": {"url": f"sqlite:///{source}"},
            "destination": {"url": f"sqlite:///{destination}"},
            "tables": [{"name": "events", "incremental_column": column, "write": "append"}],
        }
    )
    assets = [*build_source_specs([job]), *build_copy_assets([job])]
    with dg.instance_for_test() as instance:
        dg.materialize(assets, instance=instance)  # the initial load
        instance.report_runless_asset_event(
            dg.AssetMaterialization(KEY, metadata={WATERMARK: text, WATERMARK_TYPE: kind})
        )
        result = dg.materialize(assets, instance=instance, raise_on_error=False)
        latest = instance.get_latest_materialization_event(KEY).asset_materialization.metadata
    return result, latest


def _rows(destination: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(destination) as db:
        return sorted(db.execute("SELECT id, name FROM events").fetchall())


def test_a_watermark_in_the_future_stops_and_changes_nothing(source: Path, tmp_path: Path) -> None:
    """Above the source's highest value, the watermark cannot be one a copy recorded (issue 17:
    a recreated table looks the same): the run stops, naming --full-refresh, and neither the
    destination nor the watermark moves."""
    destination = tmp_path / "copy.sqlite"
    result, latest = _materialize(source, destination, "id", "integer", "9223372036854775807")
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "below the watermark 9223372036854775807" in failure.description
    assert "--full-refresh" in failure.description
    assert latest[WATERMARK].value == "9223372036854775807"
    assert _rows(destination) == [(1, "a"), (2, "b"), (3, "z")]


def test_sql_text_in_a_string_watermark_is_a_bound_value(source: Path, tmp_path: Path) -> None:
    destination = tmp_path / "copy.sqlite"
    result, latest = _materialize(source, destination, "name", "string", "b' OR '1'='1")
    assert result.success
    assert latest["copyjob/rows_read"].value == 1  # only 'z' sorts after the text
    assert _rows(destination) == [(1, "a"), (2, "b"), (3, "z")]


def test_a_watermark_of_another_type_than_the_column_is_refused(
    source: Path, tmp_path: Path
) -> None:
    destination = tmp_path / "copy.sqlite"
    result, _ = _materialize(source, destination, "id", "string", "2")
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "the watermark is a string but column 'id' now holds integer values" in (
        failure.description
    )
    assert _rows(destination) == [(1, "a"), (2, "b"), (3, "z")]
