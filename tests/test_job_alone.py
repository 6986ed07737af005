"""`copyjob run` executes the job it runs built alone (`job_named`): that job's tables and their
source tables, as its file says when the run starts, and not the other jobs of the project."""

from pathlib import Path

import dagster as dg
import pytest

from copyjob_dagster.definitions import job_named
from copyjob_dagster.errors import ConfigError


def _write(folder: Path, name: str, tables: list[str]) -> None:
    listed = "".join(f"  - name: {table}\n" for table in tables)
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\nsource: {{url: 'sqlite:///{folder / 'shop.db'}', name: shop}}\n"
        f"destination: {{url: '{folder / name}'}}\nmode: full\ntables:\n{listed}"
    )


def _copied(job: dg.JobDefinition) -> set[str]:
    return {key.to_user_string() for key in job.asset_layer.executable_asset_keys}


def test_the_job_is_built_alone_and_as_its_file_now_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COPYJOB_JOBS_DIR", str(tmp_path))
    _write(tmp_path, "orders_job", ["orders"])
    _write(tmp_path, "other_job", [f"t{i}" for i in range(3)])
    job = job_named("orders_job")
    assert _copied(job) == {"orders_job/orders"}
    known = {key.to_user_string() for key in job.asset_layer.asset_graph.get_all_asset_keys()}
    assert known == {"orders_job/orders", "source/shop/orders"}  # not the other job's tables
    assert job_named("orders_job") is job_named("orders_job")  # built once while unchanged

    _write(tmp_path, "orders_job", ["orders", "customers"])  # the file changed: read anew
    assert _copied(job_named("orders_job")) == {"orders_job/orders", "orders_job/customers"}

    (tmp_path / "orders_job.yaml").unlink()
    with pytest.raises(ConfigError, match="no copy job named 'orders_job'"):
        job_named("orders_job")
