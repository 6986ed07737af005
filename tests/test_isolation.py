"""One job file with a problem never stops the others: it is skipped and reported, and a job
whose password variable is not set loads, its runs failing with the variable's name."""

from pathlib import Path

import dagster as dg
import pytest

from copyjob_dagster.definitions import defs
from copyjob_dagster.engine import load_jobs_folder as read_jobs_folder

UNSET = "CJ_TEST_UNSET_PASSWORD"


def write_jobs(folder: Path, shop_db: Path, lake: Path) -> Path:
    """A good job beside: a typo, bad YAML, an unset variable that is not a password, a name
    used twice, and a job whose destination password variable is not set."""
    folder.mkdir()
    source = f'source: {{url: "sqlite:///{shop_db}", name: shop}}'
    (folder / "good.yaml").write_text(
        f"""name: good_job
{source}
destination: {{url: "{lake}"}}
schedule: "0 3 * * *"
tables: [{{name: customers}}, {{name: orders}}]
"""
    )
    (folder / "typo.yaml").write_text(
        f"""name: typo_job
{source}
destination: {{url: "{lake}/typo"}}
tables: [{{name: customers, to: typo_customers, colums: [id]}}]
"""
    )
    (folder / "broken_yaml.yaml").write_text("name: yaml_job\ntables: [\n")
    (folder / "host.yaml").write_text(
        f"""name: host_job
{source}
destination: {{url: "postgresql+psycopg://root@${{CJ_TEST_UNSET_HOST}}/test"}}
tables: [{{name: customers}}]
"""
    )
    (folder / "twice.yaml").write_text(
        f"""name: good_job
{source}
destination: {{url: "{lake}/twice"}}
tables: [{{name: products}}]
"""
    )
    (folder / "secret.yaml").write_text(
        f"""name: secret_job
{source}
destination: {{url: "postgresql+psycopg://root:${{{UNSET}}}@127.0.0.1:1/test"}}
tables: [{{name: customers, to: customers_s}}]
"""
    )
    return folder


@pytest.fixture
def jobs(tmp_path: Path, shop_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(UNSET, raising=False)
    monkeypatch.delenv("CJ_TEST_UNSET_HOST", raising=False)
    folder = write_jobs(tmp_path / "jobs", shop_db, tmp_path / "lake")
    monkeypatch.setenv("COPYJOB_JOBS_DIR", str(folder))
    return folder


def test_files_with_problems_are_skipped_each_with_its_problem(jobs: Path) -> None:
    folder = read_jobs_folder(jobs)
    assert [job.name for job in folder.jobs] == ["good_job", "secret_job"]
    problems = {skipped.path.name: skipped.problem for skipped in folder.skipped}
    assert sorted(problems) == ["broken_yaml.yaml", "host.yaml", "twice.yaml", "typo.yaml"]
    assert "invalid YAML" in problems["broken_yaml.yaml"]
    assert "environment variable CJ_TEST_UNSET_HOST is not set" in problems["host.yaml"]
    assert "field 'name': already used by" in problems["twice.yaml"]
    assert "table 'customers', field 'colums': unknown field" in problems["typo.yaml"]
    warnings = "\n".join(folder.warnings())
    assert f"skipped {jobs / 'typo.yaml'}: job 'typo_job'" in warnings
    assert f"job 'secret_job', field 'destination.url': environment variable {UNSET}" in warnings


def test_definitions_load_beside_broken_jobs_and_show_them_on_their_assets(jobs: Path) -> None:
    definitions = defs()
    specs = {spec.key.to_user_string(): spec for spec in definitions.resolve_all_asset_specs()}
    assert {"good_job/customers", "good_job/orders", "secret_job/customers_s"} <= set(specs)
    assert [schedule.name for schedule in definitions.schedules] == ["good_job_schedule"]
    assert definitions.resolve_job_def("good_job").name == "good_job"

    typo = specs["typo_job/typo_customers"]  # the skipped job's own asset, in its own group
    assert typo.group_name == "typo_job"
    assert "does not load" in (typo.description or "")
    assert "field 'colums': unknown field" in typo.metadata["copyjob/problem"].text
    assert "CJ_TEST_UNSET_HOST is not set" in (specs["host_job/customers"].description or "")
    # A file whose YAML does not parse, and a job named like one that loaded: one asset each.
    for file in ("broken_yaml", "twice"):
        assert "does not load" in (specs[f"copyjob_skipped/{file}"].description or "")
    secret = specs["secret_job/customers_s"]
    assert f"fail until `{UNSET}` is set" in (secret.description or "")
    assert "root:***@" in secret.metadata["copyjob/destination"]


def test_a_run_needing_an_unset_password_fails_naming_the_variable(jobs: Path) -> None:
    job = defs().resolve_job_def("secret_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert f"environment variable {UNSET} is not set" in message
    assert "root:***@127.0.0.1" in message
