"""A failed `copyjob run`, as the UI meets it: listed on its job's Runs tab, and re-executed from
the UI (from failure, then all steps) once the cause is fixed, through the real webserver's
GraphQL, as its "Re-execute" menu does."""

import os
import sqlite3
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import make_dagster_home
from dagster_web import copyjob, graphql, serve, ui_page, wait_until_ready
from test_webserver import SCREENSHOTS

LOCATION = "copyjob_dagster.definitions"
RUN_SECONDS = 120
# What the job's Runs tab asks for (the UI's PipelineRunsRoot): the job's runs of this code
# location, by the tag Dagster gives every run launched from one.
JOB_RUNS = """
query ($job: String!, $label: String!) {
  runsOrError(filter: {pipelineName: $job, tags: [{key: ".dagster/repository", value: $label}]}) {
    ... on Runs { results { runId status } }
  }
}
"""
REEXECUTE = """
mutation ($parent: String!, $strategy: ReexecutionStrategy!) {
  %s(reexecutionParams: {parentRunId: $parent, strategy: $strategy}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConflict { message }
    ... on InvalidSubsetError { message }
  }
}
"""
RUN = "query ($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"
LATEST = """
{ assetNodes(group: {groupName: "retry_ui", repositoryName: "__repository__",
                     repositoryLocationName: "copyjob_dagster.definitions"}) {
    assetKey { path } assetMaterializations(limit: 1) { runId } } }
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    source = tmp_path / "source.sqlite"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO a VALUES (?, ?)", [(1, "x"), (2, "y"), (3, "z")])
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "retry_ui.yaml").write_text(
        f"name: retry_ui\nsource: {{url: 'sqlite:///{source}'}}\n"
        f"destination: {{url: '{tmp_path / 'lake'}'}}\nmode: full\n"
        "tables:\n  - name: a\n  - name: b\n"
    )
    home = make_dagster_home(tmp_path / "dagster_home")
    # The webserver launches a re-execution at once (no daemon to dequeue it in this test).
    (home / "dagster.yaml").write_text(
        (home / "dagster.yaml").read_text()
        + "run_coordinator:\n  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n"
    )
    return {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}


def test_a_failed_cli_run_is_on_its_jobs_runs_tab_and_reexecutes_from_the_ui(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "webserver.log"
    with serve(["dagster-webserver"], env, log) as url:
        failed = copyjob(env, "run", "retry_ui")  # table b is not in the source yet
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "table 'b'" in failed.stderr
        failed_id = failed.stderr.split("error: run ")[1].split()[0]
        wait_until_ready(url, log)

        runs = graphql(url, JOB_RUNS, job="retry_ui", label=f"__repository__@{LOCATION}")
        listed = runs["data"]["runsOrError"]["results"]
        assert listed == [{"runId": failed_id, "status": "FAILURE"}]

        with sqlite3.connect(tmp_path / "source.sqlite") as db:  # the cause, fixed
            db.execute("CREATE TABLE b (id INTEGER PRIMARY KEY)")
            db.executemany("INSERT INTO b VALUES (?)", [(1,), (2,)])

        from_failure = _reexecute(url, "launchRunReexecution", failed_id, "FROM_FAILURE")
        assert _latest(url) == {"a": failed_id, "b": from_failure}  # only b copied again
        all_steps = _reexecute(url, "launchPipelineReexecution", failed_id, "ALL_STEPS")
        assert _latest(url) == {"a": all_steps, "b": all_steps}
        listed = graphql(url, JOB_RUNS, job="retry_ui", label=f"__repository__@{LOCATION}")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with ui_page() as page:  # the job's Runs tab, as a user opens it
            page.goto(f"{url}/locations/__repository__@{LOCATION}/jobs/retry_ui/runs")
            for run_id in (failed_id, from_failure, all_steps):
                page.get_by_text(run_id[:8]).first.wait_for()
            page.screenshot(path=SCREENSHOTS / "reexecution-job-runs-tab.png")
    ids = [run["runId"] for run in listed["data"]["runsOrError"]["results"]]
    assert ids == [all_steps, from_failure, failed_id]
    assert pq.read_table(tmp_path / "lake" / "b.parquet").num_rows == 2
    assert pq.read_table(tmp_path / "lake" / "a.parquet").num_rows == 3


def _reexecute(url: str, mutation: str, parent: str, strategy: str) -> str:
    """Launch the re-execution as the UI does; the new run's id, once it has succeeded."""
    answer = graphql(url, REEXECUTE % mutation, parent=parent, strategy=strategy)["data"]
    launched = answer[mutation]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        run = graphql(url, RUN, id=run_id)["data"]["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            assert run["status"] == "SUCCESS", run
            tags = {tag["key"]: tag["value"] for tag in run["tags"]}
            assert tags["dagster/parent_run_id"] == parent
            return run_id
        time.sleep(0.5)
    pytest.fail(f"the {strategy} re-execution did not finish in {RUN_SECONDS} s")


def _latest(url: str) -> dict[str, str]:
    """Each table's latest materialization's run."""
    nodes = graphql(url, LATEST)["data"]["assetNodes"]
    return {
        node["assetKey"]["path"][-1]: node["assetMaterializations"][0]["runId"]
        for node in nodes
        if node["assetMaterializations"]
    }
