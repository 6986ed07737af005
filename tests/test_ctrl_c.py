"""Ctrl-C in a terminal during `copyjob run`: one line saying what was left unchanged, exit
status 130, no traceback from Dagster's processes, and the destination as it was."""

import io
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pexpect
import pytest
from conftest import make_dagster_home

BIN = Path(sys.executable).parent


@pytest.fixture
def big_source(tmp_path: Path) -> Path:
    """A table long enough to be copying still when Ctrl-C comes."""
    path = tmp_path / "big.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, label TEXT NOT NULL)")
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
            "INSERT INTO big SELECT i, 'row ' || i FROM n"
        )
    return path


def _wait_for(path: Path, terminal: pexpect.spawn, seconds: float = 120) -> None:
    """Until `path` exists, reading the terminal so that the command never blocks on it."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        terminal.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=0.05)
        assert terminal.isalive(), "the run ended before the table was being written"


def test_ctrl_c_prints_one_line_and_leaves_the_destination(
    tmp_path: Path, big_source: Path
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    lake = tmp_path / "lake"
    (jobs / "big.yaml").write_text(
        f'name: big_copy\nsource: {{url: "sqlite:///{big_source}"}}\n'
        f'destination: {{url: "{lake}"}}\ntables: [{{name: big}}]\n'
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(make_dagster_home(tmp_path / "home")),
        "COPYJOB_JOBS_DIR": str(jobs),
    }
    shown = io.StringIO()
    terminal = pexpect.spawn(
        str(BIN / "copyjob"),
        ["run", "big_copy"],
        env=env,
        encoding="utf-8",
        timeout=180,
        # As in a terminal: a suite started in the background (`cmd &` without job control)
        # hands its processes an ignored SIGINT, and Ctrl-C would then do nothing at all.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    terminal.logfile_read = shown
    _wait_for(lake / "big.parquet.tmp", terminal)  # the table is being written
    terminal.sendintr()
    terminal.expect(pexpect.EOF)
    terminal.close()
    output = shown.getvalue()
    assert terminal.exitstatus == 130, output
    interrupted = [line for line in output.splitlines() if "interrupted" in line]
    assert len(interrupted) == 1, output
    assert "left unchanged (destination and watermark as before the run): big" in output
    assert "Traceback" not in output and "DagsterExecutionInterruptedError" not in output
    assert not (lake / "big.parquet").exists()
