"""A `copyjob` command's process ends without the interpreter's garbage collection over every
object Dagster and the drivers left alive (0.5-0.9 s of CPU after a `copyjob run` had printed
its result): the command freezes them at exit, whether it succeeded or failed."""

import subprocess
import sys
from pathlib import Path

import pytest

GOOD = "name: lake_copy\nsource: {url: 'sqlite:///shop.db'}\ndestination: {url: lake}\n"
GOOD += "mode: full\ntables:\n  - name: orders\n"
# Registered before the command runs, so it runs after the command's own exit handlers.
PROGRAM = """
import atexit, gc, sys
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
from copyjob_dagster.cli import main
main(["validate"])
"""


@pytest.mark.parametrize(("text", "code"), [(GOOD, 0), ("name: [not, a, job]\n", 1)])
def test_a_command_leaves_its_objects_out_of_the_exit_collection(
    tmp_path: Path, text: str, code: int
) -> None:
    (tmp_path / "job.yaml").write_text(text)
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env={"COPYJOB_JOBS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == code, result.stderr
    assert "frozen at exit: True" in result.stdout
