"""A broken job beside a good one, as a user meets it: `copyjob run`, `list` and `history` work
for the good job with a warning about the broken one, and the real webserver shows the good
job's assets and schedule, and the broken job's assets saying why it is not copied."""

import os
from pathlib import Path

import pytest
from conftest import make_dagster_home
from dagster_web import copyjob, graphql, serve, wait_until_ready
from test_isolation import UNSET, write_jobs

LOCATION = """
{
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
  schedulesOrError(repositorySelector: {
    repositoryName: "__repository__", repositoryLocationName: "copyjob_dagster.definitions"
  }) { ... on Schedules { results { name } } }
  assetNodes {
    assetKey { path }
    groupName
    description
    assetMaterializations(limit: 1) { runId }
  }
}
"""


@pytest.fixture
def env(tmp_path: Path, shop_db: Path) -> dict[str, str]:
    jobs = write_jobs(tmp_path / "jobs", shop_db, tmp_path / "lake")
    home = make_dagster_home(tmp_path / "dagster_home")
    environment = {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}
    environment.pop(UNSET, None)
    environment.pop("CJ_TEST_UNSET_HOST", None)
    return environment


def test_a_broken_job_leaves_the_good_one_working_in_the_cli_and_the_ui(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "webserver.log"
    with serve(["dagster-webserver"], env, log) as url:
        copied = copyjob(env, "run", "good_job")
        assert copied.returncode == 0, copied.stderr
        run_id = copied.stdout.split("run ")[-1].split()[0]
        assert f"warning: skipped {Path(env['COPYJOB_JOBS_DIR']) / 'typo.yaml'}" in copied.stderr
        listed = copyjob(env, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert '"name": "good_job"' in listed.stdout and '"last_run_status": "success"' in (
            listed.stdout
        )
        history = copyjob(env, "history", "good_job", "--json")
        assert history.returncode == 0, history.stderr
        assert history.stdout.count(f'"run_id": "{run_id}"') == 2  # customers and orders
        validated = copyjob(env, "validate")
        assert validated.returncode == 1
        assert "field 'colums': unknown field" in validated.stderr

        wait_until_ready(url, log)
        answer = graphql(url, LOCATION)["data"]
    (location,) = answer["workspaceOrError"]["locationEntries"]
    assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation", location
    assert answer["schedulesOrError"]["results"] == [{"name": "good_job_schedule"}]
    nodes = {"/".join(node["assetKey"]["path"]): node for node in answer["assetNodes"]}
    for table in ("customers", "orders"):
        assert nodes[f"good_job/{table}"]["assetMaterializations"] == [{"runId": run_id}]
    typo = nodes["typo_job/typo_customers"]
    assert typo["groupName"] == "typo_job"
    assert "does not load" in typo["description"] and "colums" in typo["description"]
    assert "invalid YAML" in nodes["copyjob_skipped/broken_yaml"]["description"]
    assert f"`{UNSET}` is set" in nodes["secret_job/customers_s"]["description"]
