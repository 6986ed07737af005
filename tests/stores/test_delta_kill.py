"""A copy into Delta killed with SIGKILL while it writes: the table keeps its previous version,
and the rerun of the same window leaves every row once."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from deltalake import DeltaTable

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import Watermark, copy_table

# Runs one copy whose write stops after its first batch: it writes a marker and waits there.
CHILD = """
import json, sys, time
import copyjob_dagster.stores.delta as delta
from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import Watermark, copy_table

spec = json.loads(sys.argv[1])
real = delta.as_delta

def stalled(batches, schema):
    def held():
        for number, batch in enumerate(batches):
            yield batch
            if number == 0:
                open(spec["marker"], "w").close()
                time.sleep(600)
    return real(held(), schema)

delta.as_delta = stalled
job = CopyJob.model_validate(spec["job"])
copy_table(job, job.tables[0], Watermark(**spec["watermark"]) if spec["watermark"] else None)
"""


def test_a_run_killed_while_writing_leaves_the_previous_version(tmp_path: Path) -> None:
    source = tmp_path / "source.sqlite"
    lake = tmp_path / "lake"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT, updated_at INT)")
        db.executemany("INSERT INTO events VALUES (?, ?, ?)", [(i, "a", i) for i in range(1, 51)])
    spec = {
        "name": "kill",
        "mode": "incremental",
        "source": {"url": f"sqlite:///{source}"},
        "destination": {"url": f"delta:///{lake}"},
        "batch_rows": 10,
        "tables": [{"name": "events", "incremental_column": "updated_at", "write": "append"}],
    }
    job = CopyJob.model_validate(spec)
    initial = copy_table(job, job.tables[0])
    with sqlite3.connect(source) as db:
        db.executemany("INSERT INTO events VALUES (?, ?, ?)", [(i, "b", i) for i in range(51, 131)])
    marker = tmp_path / "writing"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            json.dumps(
                {"job": spec, "watermark": initial.watermark.__dict__, "marker": str(marker)}
            ),
        ]
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the copy ended before it wrote"
            assert time.monotonic() < deadline, "the copy never started writing"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()

    table = DeltaTable(str(lake / "events"))
    assert table.version() == 0
    assert table.count() == 50
    rerun = copy_table(job, job.tables[0], Watermark(**initial.watermark.__dict__))
    ids = DeltaTable(str(lake / "events")).to_pyarrow_table().column("id").to_pylist()
    assert sorted(ids) == list(range(1, 131))  # none lost, none twice
    assert rerun.commit.version == 1
