"""The project as a user browses it: the real Dagster webserver, on the project's workspace.yaml.

Through its GraphQL API: after `copyjob run`, the job's assets downstream of their source tables,
the latest materialization's watermark and row counts, the schedule and the sensor, the
row-count check's result, the freshness policy, and the run. Through headless Chromium (Debian's
`chromium`, driven by Playwright; skipped where either is missing, except under CI=true): the
asset graph, a materialization launched with its button, and the asset's page. Its screenshots
are kept in `test-artifacts/ui/` (git-ignored).
"""

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_dagster_home
from dagster_web import graphql, serve, ui_page, wait_until_ready

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REPOSITORY = {
    "repositoryName": "__repository__",
    "repositoryLocationName": "copyjob_dagster.definitions",
}
RUN_SECONDS = 180
SCREENSHOTS = PROJECT / "test-artifacts" / "ui"

ASSETS = """
query ($group: AssetGroupSelector!) {
  assetNodes(group: $group) {
    assetKey { path }
    dependencyKeys { path }
    internalFreshnessPolicy { ... on TimeWindowFreshnessPolicy { failWindowSeconds } }
    assetMaterializations(limit: 1) {
      runId
      metadataEntries {
        label
        ... on IntMetadataEntry { intRepr }
        ... on TextMetadataEntry { text }
      }
    }
    assetChecksOrError {
      ... on AssetChecks {
        checks {
          name
          executionForLatestMaterialization { status evaluation { success description } }
        }
      }
    }
  }
}
"""
AUTOMATION = """
query ($repository: RepositorySelector!) {
  schedulesOrError(repositorySelector: $repository) {
    ... on Schedules {
      results { name cronSchedule executionTimezone pipelineName scheduleState { status } }
    }
  }
  sensorsOrError(repositorySelector: $repository) {
    ... on Sensors {
      results { name minIntervalSeconds targets { pipelineName } sensorState { status } }
    }
  }
  runsOrError { ... on Runs { results { runId jobName status assetSelection { path } } } }
}
"""


@pytest.fixture
def project_env(tmp_path: Path, shop_db: Path) -> dict[str, str]:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "shop.yaml").write_text(
        f"""
name: shop_ui
source: {{url: "sqlite:///{shop_db}", name: shop}}
destination: {{url: "{tmp_path / "lake"}"}}
mode: incremental
schedule: {{cron: "0 */6 * * *", timezone: Europe/Paris, status: stopped}}
sensor: {{minimum_interval_seconds: 120}}
tables:
  - {{name: customers, incremental_column: created_at}}
  - {{name: orders, to: orders_copy, incremental_column: updated_at}}
"""
    )
    home = make_dagster_home(tmp_path / "dagster_home")
    return {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}


@pytest.fixture
def webserver(project_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The URL of `dagster-webserver` alone (no daemon) on the project's workspace."""
    with serve(["dagster-webserver"], project_env, tmp_path / "webserver.log") as url:
        yield url


@pytest.fixture
def dagster_dev(project_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The URL of `dagster dev` (webserver and daemon), with the job's sensor stopped so that
    the only run is the one the test launches."""
    job_file = Path(project_env["COPYJOB_JOBS_DIR"]) / "shop.yaml"
    job_file.write_text(job_file.read_text().replace("120}", "120, status: stopped}"))
    with serve(["dagster", "dev"], project_env, tmp_path / "webserver.log") as url:
        yield url


def _source(shop_db: Path, query: str) -> Any:
    with sqlite3.connect(shop_db) as db:
        return db.execute(query).fetchone()[0]


def test_the_ui_shows_assets_lineage_metadata_automation_checks_and_runs(
    webserver: str, project_env: dict[str, str], shop_db: Path, tmp_path: Path
) -> None:
    copied = subprocess.run(
        [str(BIN / "copyjob"), "run", "shop_ui"],
        cwd=PROJECT,
        env=project_env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    run_id = copied.stdout.split("run ")[-1].split()[0]
    wait_until_ready(webserver, tmp_path / "webserver.log")

    nodes = graphql(webserver, ASSETS, group={"groupName": "shop_ui", **REPOSITORY})["data"][
        "assetNodes"
    ]
    by_table = {node["assetKey"]["path"][-1]: node for node in nodes}
    assert sorted(by_table) == ["customers", "orders_copy"]
    assert by_table["orders_copy"]["dependencyKeys"] == [{"path": ["source", "shop", "orders"]}]
    assert by_table["customers"]["dependencyKeys"] == [{"path": ["source", "shop", "customers"]}]

    orders = by_table["orders_copy"]
    (latest,) = orders["assetMaterializations"]
    assert latest["runId"] == run_id
    metadata = {e["label"]: e.get("intRepr", e.get("text")) for e in latest["metadataEntries"]}
    rows = _source(shop_db, "SELECT count(*) FROM orders")
    assert metadata["dagster/row_count"] == metadata["copyjob/rows_read"] == str(rows)
    assert metadata["copyjob/watermark"].startswith(
        _source(shop_db, "SELECT max(updated_at) FROM orders")[:19]
    )
    assert metadata["copyjob/watermark_type"] == "timestamp"
    (check,) = orders["assetChecksOrError"]["checks"]
    assert check["name"] == "row_count_parity"
    execution = check["executionForLatestMaterialization"]
    assert execution["status"] == "SUCCEEDED" and execution["evaluation"]["success"]
    assert (
        f"{rows:,} rows: as many as the {rows:,} source rows"
        in execution["evaluation"]["description"]
    )
    six_hours = 6 * 3600
    assert orders["internalFreshnessPolicy"]["failWindowSeconds"] == 2 * six_hours + six_hours / 4

    automation = graphql(webserver, AUTOMATION, repository=REPOSITORY)["data"]
    (schedule,) = automation["schedulesOrError"]["results"]
    assert schedule == {
        "name": "shop_ui_schedule",
        "cronSchedule": "0 */6 * * *",
        "executionTimezone": "Europe/Paris",
        "pipelineName": "shop_ui",
        "scheduleState": {"status": "STOPPED"},
    }
    sensors = {sensor["name"]: sensor for sensor in automation["sensorsOrError"]["results"]}
    assert sorted(sensors) == ["copyjob_run_summaries", "shop_ui_new_data"]
    sensor = sensors["shop_ui_new_data"]
    assert sensor["minIntervalSeconds"] == 120
    assert sensor["targets"] == [{"pipelineName": "shop_ui"}]
    assert sensor["sensorState"]["status"] == "RUNNING"
    (run,) = automation["runsOrError"]["results"]
    assert (run["runId"], run["jobName"], run["status"]) == (run_id, "shop_ui", "SUCCESS")
    assert sorted(key["path"][-1] for key in run["assetSelection"]) == ["customers", "orders_copy"]


RUNS = "{ runsOrError { ... on Runs { results { runId status } } } }"


def test_the_ui_launches_a_copy_and_shows_its_rows_and_watermark(
    dagster_dev: str, shop_db: Path, tmp_path: Path
) -> None:
    wait_until_ready(dagster_dev, tmp_path / "webserver.log")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    rows = _source(shop_db, "SELECT count(*) FROM orders")
    watermark = _source(shop_db, "SELECT max(updated_at) FROM orders")[:19]
    with ui_page(1400) as page:
        page.goto(f"{dagster_dev}/locations/copyjob_dagster.definitions/asset-groups/shop_ui")
        page.get_by_text("Never materialized").first.wait_for()  # each node's status
        page.screenshot(path=SCREENSHOTS / "1-asset-graph.png")

        page.get_by_role("button", name="Materialize all").click()
        run_id = _wait_for_run(dagster_dev)
        page.goto(f"{dagster_dev}/runs/{run_id}")
        page.get_by_text("Success").first.wait_for()
        page.screenshot(path=SCREENSHOTS / "2-run.png")

        page.goto(f"{dagster_dev}/assets/shop_ui/orders_copy")
        page.get_by_text("copyjob/watermark", exact=True).wait_for()
        page.screenshot(path=SCREENSHOTS / "3-asset-page.png", full_page=True)
        text = page.inner_text("body")
    assert "Row count" in text and f"{rows:,}" in text
    assert "copyjob/rows_written" in text and watermark in text


def _wait_for_run(url: str) -> str:
    """The id of the run the UI launched, once it has succeeded."""
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        runs = graphql(url, RUNS)["data"]["runsOrError"]["results"]
        if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            assert runs[0]["status"] == "SUCCESS", runs
            return runs[0]["runId"]
        time.sleep(1)
    pytest.fail(f"the run launched from the UI did not finish in {RUN_SECONDS} s")
