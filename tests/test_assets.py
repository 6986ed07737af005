"""The Dagster assets as a user meets them: materialize, count rows, read the metadata."""

import shutil
import sqlite3
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from copyjob_dagster.config import CopyJob
from copyjob_dagster.definitions import build_definitions
from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs


def _job(source: Path, destination: str, **table: object) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "shop_copy",
            "source": {"url": f"sqlite:///{source}"},
            "destination": {"url": destination},
            "tables": [{"name": "products", **table}, {"name": "customers"}],
        }
    )


def _materialize(job: CopyJob, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*build_source_specs([job]), *build_copy_assets([job])],
        instance=instance,
        raise_on_error=False,
    )


def test_materialize_copies_tables_and_records_metadata(shop_db: Path, tmp_path: Path) -> None:
    job = _job(shop_db, str(tmp_path / "lake"), rename={"price": "list_price"}, to="catalog")
    with dg.instance_for_test() as instance:
        result = _materialize(job, instance)
        assert result.success
        event = instance.get_latest_materialization_event(dg.AssetKey(["shop_copy", "catalog"]))

    with sqlite3.connect(shop_db) as db:
        source_rows = db.execute("SELECT count(*) FROM products").fetchone()[0]
    copied = pq.read_table(tmp_path / "lake" / "catalog.parquet")
    assert copied.num_rows == source_rows
    assert "list_price" in copied.column_names and "price" not in copied.column_names

    metadata = event.asset_materialization.metadata
    assert metadata["dagster/row_count"].value == source_rows
    assert metadata["copyjob/rows_read"].value == source_rows
    assert metadata["copyjob/rows_written"].value == source_rows
    assert metadata["dagster/table_name"].value == str(tmp_path / "lake" / "catalog.parquet")
    schema = metadata["dagster/column_schema"].value
    assert [c.name for c in schema.columns] == copied.column_names
    lineage = metadata["dagster/column_lineage"].value.deps_by_column
    assert lineage["list_price"] == [
        dg.TableColumnDep(dg.AssetKey(["source", "shop", "products"]), "price")
    ]
    assert metadata["copyjob/seconds"].value >= 0


def test_lineage_reads_source_then_copy(shop_db: Path, tmp_path: Path) -> None:
    definitions = build_definitions([_job(shop_db, str(tmp_path / "lake"))])
    graph = definitions.resolve_asset_graph()
    copy = dg.AssetKey(["shop_copy", "products"])
    assert graph.get(copy).parent_keys == {dg.AssetKey(["source", "shop", "products"])}
    assert graph.get(copy).group_name == "shop_copy"
    assert graph.get(copy).kinds == {"sqlite", "parquet"}


def test_password_never_reaches_metadata(pg_schema: str, shop_db: Path) -> None:
    # The local server trusts every login, so a password is accepted and must stay hidden.
    url = "postgresql+psycopg://root:canary-Zq81x@127.0.0.1:5432/test"
    job = CopyJob.model_validate(
        {
            "name": "masked",
            "source": {"url": f"sqlite:///{shop_db}"},
            "destination": {"url": url, "schema": pg_schema},
            "tables": [{"name": "customers"}],
        }
    )
    with dg.instance_for_test() as instance:
        assert _materialize(job, instance).success
        event = instance.get_latest_materialization_event(dg.AssetKey(["masked", "customers"]))
    metadata = event.asset_materialization.metadata
    assert (
        metadata["copyjob/destination"].value == "postgresql+psycopg://root:***@127.0.0.1:5432/test"
    )
    assert "canary-Zq81x" not in repr(metadata)
    spec_metadata = build_definitions([job]).resolve_assets_def(["masked", "customers"])
    assert "canary-Zq81x" not in repr(spec_metadata.specs_by_key)


def test_failed_copy_records_no_materialization(shop_db: Path, tmp_path: Path) -> None:
    job = _job(shop_db, str(tmp_path / "lake"), columns=["id", "no_such_column"])
    with dg.instance_for_test() as instance:
        result = _materialize(job, instance)
        assert not result.success
        failed = instance.get_latest_materialization_event(dg.AssetKey(["shop_copy", "products"]))
        copied = instance.get_latest_materialization_event(dg.AssetKey(["shop_copy", "customers"]))
    assert failed is None
    assert copied is not None  # the other table's step is independent
    failure = result.get_step_failure_events()[0].step_failure_data
    assert "no column 'no_such_column'" in failure.user_failure_data.description
    assert not (tmp_path / "lake" / "products.parquet").exists()


@pytest.mark.parametrize("mode", ["sqlite", "parquet"])
def test_full_copy_replaces_previous_copy(shop_db: Path, tmp_path: Path, mode: str) -> None:
    """Between two full copies the source changes (rows updated, deleted, added): the second
    copy holds the source's rows as they are now, none of the first copy's left over."""
    source = tmp_path / "shop.sqlite"
    shutil.copy(shop_db, source)
    destination = f"sqlite:///{tmp_path / 'dest.sqlite'}" if mode == "sqlite" else str(tmp_path)
    job = _job(source, destination)
    columns = "id, email, full_name, country"
    with dg.instance_for_test() as instance:
        assert _materialize(job, instance).success
        with sqlite3.connect(source) as db:
            first = db.execute(f"SELECT {columns} FROM customers ORDER BY id").fetchall()
            db.execute("UPDATE customers SET full_name = 'Renamed ' || id WHERE id % 3 = 0")
            db.execute("DELETE FROM customers WHERE id % 5 = 0")
            db.execute(
                "INSERT INTO customers VALUES "
                "(100000, 'new@example.com', 'New Customer', 'DE', 1, '2026-01-01 00:00:00')"
            )
        assert _materialize(job, instance).success
        events = instance.fetch_materializations(dg.AssetKey(["shop_copy", "customers"]), limit=5)
    assert len(events.records) == 2
    with sqlite3.connect(source) as db:
        expected = db.execute(f"SELECT {columns} FROM customers ORDER BY id").fetchall()
    if mode == "sqlite":
        with sqlite3.connect(tmp_path / "dest.sqlite") as db:
            copied = db.execute(f"SELECT {columns} FROM customers ORDER BY id").fetchall()
    else:
        table = pq.read_table(tmp_path / "customers.parquet", columns=columns.split(", "))
        copied = sorted(zip(*(c.to_pylist() for c in table.columns), strict=True))
    assert first != expected  # the source did change
    assert copied == expected
