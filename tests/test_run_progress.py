"""What `copyjob run` prints while a run goes on: that the run started, and each failed attempt
of a table that its retry policy tries again (instead of silence until the last one fails)."""

import io
from pathlib import Path

import dagster as dg
from rich.console import Console

from copyjob_dagster.cli.watch import show_progress
from copyjob_dagster.config import CopyJob
from copyjob_dagster.definitions import build_definitions


def test_a_retried_table_says_so_while_the_run_goes_on(tmp_path: Path) -> None:
    job = CopyJob.model_validate(
        {
            "name": "retried",
            "source": {"url": "postgresql+psycopg://root@127.0.0.1:1/none", "connect_timeout": 2},
            "destination": {"url": str(tmp_path / "lake")},
            "retries": {"max_retries": 1, "delay_seconds": 1},
            "tables": [{"name": "orders"}],
        }
    )
    console = Console(file=io.StringIO(), width=80)  # not a terminal: plain lines
    tags = {"copyjob/cli_run": "test"}
    asset_job = build_definitions([job]).resolve_job_def("retried")
    with (
        dg.instance_for_test() as instance,
        show_progress(
            console,
            tags,
            {"orders": "orders"},
            {dg.AssetKey(["retried", "orders"]): "orders"},
        ),
    ):
        result = asset_job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    assert not result.success
    lines = console.file.getvalue().splitlines()
    assert lines[0] == f"run {result.run_id} started"
    (retrying,) = [line for line in lines if "retrying" in line]
    assert retrying.startswith(
        "orders: retrying orders in 1 s (attempt 1 failed: source postgresql+psycopg://"
    )
    assert "Connection refused" in retrying
    assert lines[-1] == "orders: failed"
