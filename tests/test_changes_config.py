"""Job files with deletions, SCD2 and audit columns: what is accepted, and errors that name the
file, job, table and field."""

from pathlib import Path

import pyarrow as pa
import pytest

from copyjob_dagster.engine import load_job
from copyjob_dagster.engine.planning import plan_copy
from copyjob_dagster.errors import ConfigError, SchemaError
from copyjob_dagster.stores.base import TableDescription

HEAD = "name: shop\nsource: {url: 'sqlite:///shop.db'}\ndestination: {url: lake}\n"
INCREMENTAL = HEAD + "mode: incremental\n"


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return load_job(path)


def test_audit_columns_of_the_job_apply_unless_a_table_overrides(tmp_path: Path) -> None:
    job = _load(
        tmp_path,
        INCREMENTAL + "audit_columns: true\ntables:\n"
        "  - {name: a, incremental_column: u}\n"
        "  - {name: b, incremental_column: u, audit_columns: false}\n"
        "  - {name: c, incremental_column: u, audit_columns: {run_id: by, loaded_at: null}}\n",
    )
    a, b, c = (job.audit_for(t) for t in job.tables)
    assert a.names == [
        "_copyjob_run_id", "_copyjob_loaded_at", "_copyjob_window_from", "_copyjob_window_to"
    ]  # fmt: skip
    assert b is None
    assert c.names == ["by", "_copyjob_window_from", "_copyjob_window_to"]


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        pytest.param(
            "  - {name: t, incremental_column: u, deletes: soft}\n",
            "table 't', field 'deletes': deletes: soft finds deleted rows by their key; name it "
            "with primary_key: [...]",
            id="deletes-without-key",
        ),
        pytest.param(
            "  - {name: t, incremental_column: u, write: scd2}\n",
            "table 't', field 'write': write: scd2 keeps versions per key; name it with "
            "primary_key: [...]",
            id="scd2-without-key",
        ),
        pytest.param(
            "  - {name: t, incremental_column: u, primary_key: [id], columns: [id, u, note],"
            " audit_columns: {run_id: note}}\n",
            "table 't', field 'audit_columns': column 'note' is also a copied column; choose "
            "another name",
            id="audit-name-is-a-copied-column",
        ),
        pytest.param(
            "  - {name: t, incremental_column: u, primary_key: [id], deletes: soft,"
            " deleted_column: when, audit_columns: {loaded_at: when}}\n",
            "table 't', field 'deleted_column': column 'when' is also named by audit_columns",
            id="two-added-columns-alike",
        ),
        pytest.param(
            "  - {name: t, incremental_column: u, primary_key: [id], columns: [id, u],"
            " write: scd2, history_columns: {valid_to: u}}\n",
            "table 't', field 'history_columns': column 'u' is also a copied column; choose "
            "another name",
            id="history-name-is-the-cursor",
        ),
        pytest.param(
            "  - {name: t, incremental_column: u, primary_key: [id], deletes: hard,"
            " max_delete_share: 0}\n",
            "table 't', field 'max_delete_share': should be greater than 0",
            id="guard-share-zero",
        ),
    ],
)
def test_errors_name_the_field(tmp_path: Path, tables: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, INCREMENTAL + "tables:\n" + tables)
    assert str(caught.value) == f"{tmp_path / 'job.yaml'}: job 'shop', {expected}"


def test_deletes_and_scd2_need_an_incremental_job(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="table 't', field 'deletes': applies to incremental"):
        _load(tmp_path, HEAD + "tables:\n  - {name: t, primary_key: [id], deletes: hard}\n")


def test_an_added_column_that_the_source_also_has_is_refused_when_planned(
    tmp_path: Path,
) -> None:
    job = _load(
        tmp_path,
        INCREMENTAL + "tables:\n  - {name: t, incremental_column: u, audit_columns: true}\n",
    )
    source = TableDescription(
        "t", pa.schema([("id", pa.int64()), ("u", pa.int64()), ("_copyjob_run_id", pa.string())])
    )
    with pytest.raises(SchemaError, match="added column '_copyjob_run_id' is also a copied"):
        plan_copy(job, job.tables[0], source)
