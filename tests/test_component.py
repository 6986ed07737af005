"""A copy job in a project made for `dg`, as a Dagster user adds one to the project they have.

A fresh project in a temporary folder (the layout `create-dagster project` writes, with
`dagster-dg-cli` pinned in its dev dependencies, importable through PYTHONPATH instead of an
install), then the commands a user types: `dg list components`, `dg scaffold defs
copyjob_dagster.CopyJobComponent ...`, `dg check defs`, `dg list defs`, `dg launch`.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml

BIN = Path(sys.executable).parent
DG_VERSION = "1.13.27"  # dagster-dg-cli, of dagster's release line (pyproject.toml)

PYPROJECT = f"""\
[project]
name = "my_project"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["dagster==1.13.27", "copyjob-dagster"]

[dependency-groups]
dev = ["dagster-dg-cli=={DG_VERSION}", "dagster-webserver==1.13.27"]

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "my_project"
"""

DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs():
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "my-project"
    package = root / "src" / "my_project"
    (package / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(DEFINITIONS)
    return root


def _dg(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dg"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_scaffolded_copy_job_checks_lists_and_copies(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(project / "src"),
        "DAGSTER_HOME": str(home),
        "COLUMNS": "250",
        "LAKE_DIR": str(tmp_path / "lake"),
    }

    listed = _dg(project, "list", "components", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "copyjob_dagster.CopyJobComponent" in listed.stdout

    scaffolded = _dg(
        project, "scaffold", "defs", "copyjob_dagster.CopyJobComponent", "my_copy", env=env
    )
    assert scaffolded.returncode == 0, scaffolded.stderr
    defs_yaml = project / "src" / "my_project" / "defs" / "my_copy" / "defs.yaml"
    written = yaml.safe_load(defs_yaml.read_text())
    assert written["type"] == "copyjob_dagster.CopyJobComponent"
    assert written["attributes"]["name"] == "my_copy"
    # A secret-style reference, expanded when the component loads, as in a job file.
    written["attributes"]["destination"]["url"] = "${LAKE_DIR}"
    defs_yaml.write_text(yaml.safe_dump(written, sort_keys=False))

    checked = _dg(project, "check", "defs", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    defs = _dg(project, "list", "defs", "--json", env=env)
    assert defs.returncode == 0, defs.stderr
    assert "my_copy/customers" in defs.stdout and "my_copy/orders_copy" in defs.stdout
    assert "row_count_parity" in defs.stdout

    launched = _dg(project, "launch", "--job", "my_copy", env=env)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    customers = pq.read_table(tmp_path / "lake" / "customers").num_rows
    orders = pq.read_table(tmp_path / "lake" / "orders_copy").num_rows
    assert customers > 0 and orders > 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["my_copy", "customers"]))
    assert event.asset_materialization.metadata["dagster/row_count"].value == customers

    # A mistake in the attributes gets copyjob's own message, naming the file, job and field.
    written["attributes"]["mode"] = "sometimes"
    defs_yaml.write_text(yaml.safe_dump(written, sort_keys=False))
    broken = _dg(project, "check", "defs", env=env)
    assert broken.returncode != 0
    assert (
        f"{defs_yaml}: job 'my_copy', field 'mode': should be 'full', 'incremental' or 'cdc'"
        in (broken.stdout + broken.stderr)
    )
