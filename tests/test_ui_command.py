"""`copyjob ui` as the README starts it: `.venv/bin/copyjob ui`, the venv's folder not on PATH."""

from pathlib import Path

from conftest import make_dagster_home
from dagster_web import graphql, serve, wait_until_ready


def test_copyjob_ui_starts_without_the_venv_on_path(tmp_path: Path, shop_db: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "shop.yaml").write_text(
        f'name: shop_ui\nsource: {{url: "sqlite:///{shop_db}"}}\n'
        f'destination: {{url: "{tmp_path / "lake"}"}}\ntables: [{{name: customers}}]\n'
    )
    env = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "DAGSTER_HOME": str(make_dagster_home(tmp_path / "home")),
        "COPYJOB_JOBS_DIR": str(jobs),
    }
    log = tmp_path / "ui.log"
    with serve(["copyjob", "ui"], env, log, workspace=False) as url:
        wait_until_ready(url, log)
        nodes = graphql(url, "{ assetNodes { assetKey { path } } }")["data"]["assetNodes"]
    assert {"path": ["shop_ui", "customers"]} in [node["assetKey"] for node in nodes]
