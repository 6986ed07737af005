"""A `copyjob` command ends without the interpreter's garbage collection over every object
Dagster and the drivers left alive (0.5 s of CPU after a `copyjob run` had printed its result):
the command freezes them once it is done, whether it succeeded or failed."""

import gc
from pathlib import Path

import pytest
from click.testing import CliRunner

from copyjob_dagster.cli import main

GOOD = "name: lake_copy\nsource: {url: 'sqlite:///shop.db'}\ndestination: {url: lake}\n"
GOOD += "mode: full\ntables:\n  - name: orders\n"


@pytest.mark.parametrize(("text", "code"), [(GOOD, 0), ("name: [not, a, job]\n", 1)])
def test_a_command_leaves_its_objects_out_of_the_exit_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, code: int
) -> None:
    (tmp_path / "job.yaml").write_text(text)
    monkeypatch.setenv("COPYJOB_JOBS_DIR", str(tmp_path))
    gc.unfreeze()
    try:
        result = CliRunner().invoke(main, ["validate"])
        assert result.exit_code == code, result.output
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
