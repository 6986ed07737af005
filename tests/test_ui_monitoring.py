"""Monitoring in the real webserver: after two `copyjob run`s, each run carries its rows as tags
(shown in the Runs list), `copyjob_monitoring/runs` holds each run's summary per table,
`copyjob_monitoring/totals` the totals per job and database, and each table's page its lifetime
totals. Read through GraphQL, and seen in headless Chromium; the screenshots are kept in
`test-artifacts/ui/` (see test_webserver.py for how Chromium is found)."""

import os
from pathlib import Path

import pytest
from conftest import make_dagster_home
from dagster_web import copyjob, graphql, serve, ui_page, wait_until_ready
from test_webserver import SCREENSHOTS, _source

MONITORING = """
{
  runsOrError { ... on Runs { results { runId tags { key value } } } }
  assetNodes(assetKeys: [
    {path: ["copyjob_monitoring", "runs"]}, {path: ["copyjob_monitoring", "totals"]}
  ]) {
    assetKey { path }
    assetObservations(limit: 1) {
      metadataEntries {
        label
        ... on IntMetadataEntry { intRepr }
        ... on TableMetadataEntry { table { records } }
        ... on PipelineRunMetadataEntry { runId }
      }
    }
  }
  lifetime: assetNodes(assetKeys: [{path: ["shop_ui", "orders_copy"]}]) {
    assetMaterializations(limit: 1) {
      metadataEntries { label ... on IntMetadataEntry { intRepr } }
    }
  }
}
"""


@pytest.fixture
def env(tmp_path: Path, shop_db: Path) -> dict[str, str]:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "shop.yaml").write_text(
        f'name: shop_ui\nsource: {{url: "sqlite:///{shop_db}", name: shop}}\n'
        f'destination: {{url: "{tmp_path / "lake"}"}}\n'
        "tables: [{name: customers}, {name: orders, to: orders_copy}]\n"
    )
    home = make_dagster_home(tmp_path / "dagster_home")
    return {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}


def _run(env: dict[str, str]) -> str:
    copied = copyjob(env, "run", "shop_ui")
    assert copied.returncode == 0, copied.stderr
    return copied.stdout.split("run ")[-1].split()[0]


def test_the_ui_shows_each_runs_rows_its_summary_and_lifetime_totals(
    env: dict[str, str], shop_db: Path, tmp_path: Path
) -> None:
    customers = _source(shop_db, "SELECT count(*) FROM customers")
    orders = _source(shop_db, "SELECT count(*) FROM orders")
    log = tmp_path / "webserver.log"
    with serve(["dagster-webserver"], env, log) as url:
        run_ids = [_run(env), _run(env)]
        wait_until_ready(url, log)
        answer = graphql(url, MONITORING)["data"]
        runs = {run["runId"]: run["tags"] for run in answer["runsOrError"]["results"]}
        for run_id in run_ids:
            tags = {tag["key"]: tag["value"] for tag in runs[run_id]}
            assert tags["copyjob/rows_written"] == str(customers + orders)
            assert tags["copyjob/tables_copied"] == "2_of_2"
        nodes = {"/".join(node["assetKey"]["path"]): node for node in answer["assetNodes"]}
        (summary,) = nodes["copyjob_monitoring/runs"]["assetObservations"]
        entries = {entry["label"]: entry for entry in summary["metadataEntries"]}
        assert entries["run"]["runId"] == run_ids[1]
        assert entries["rows written"]["intRepr"] == str(customers + orders)
        tables = "".join(entries["tables"]["table"]["records"])
        assert '"table": "orders_copy"' in tables and f'"rows written": {orders}' in tables
        (totals,) = nodes["copyjob_monitoring/totals"]["assetObservations"]
        entries = {entry["label"]: entry for entry in totals["metadataEntries"]}
        assert entries["shop_ui: rows written"]["intRepr"] == str(2 * (customers + orders))
        (latest,) = answer["lifetime"][0]["assetMaterializations"]
        lifetime = {e["label"]: e.get("intRepr") for e in latest["metadataEntries"]}
        assert lifetime["copyjob/lifetime_rows_written"] == str(2 * orders)

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with ui_page(1600) as page:
            page.goto(f"{url}/runs")
            page.get_by_text(f"copyjob/rows_written: {customers + orders}").first.wait_for()
            page.screenshot(path=SCREENSHOTS / "monitoring-1-runs-list.png")

            page.goto(f"{url}/assets/copyjob_monitoring/runs?view=events")
            page.get_by_text("orders_copy").first.wait_for()
            page.screenshot(path=SCREENSHOTS / "monitoring-2-run-summary.png", full_page=True)
            summary_text = page.inner_text("body")

            page.set_viewport_size({"width": 1600, "height": 1500})
            page.goto(f"{url}/assets/copyjob_monitoring/totals")
            page.get_by_text("per destination database").first.wait_for()
            page.screenshot(path=SCREENSHOTS / "monitoring-3-totals.png")
            totals_text = page.inner_text("body")

            page.goto(f"{url}/assets/shop_ui/orders_copy")
            page.get_by_placeholder("Filter metadata keys").fill("lifetime")
            page.get_by_role("button", name="Plots").click()
            page.get_by_text("copyjob/lifetime_rows_written").first.wait_for()
            page.screenshot(path=SCREENSHOTS / "monitoring-4-table-lifetime.png")
    assert f"{orders:,}" in summary_text or str(orders) in summary_text
    assert "shop_ui" in totals_text and "per job" in totals_text
