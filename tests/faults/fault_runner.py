"""Materialize one copy job's tables on $DAGSTER_HOME, and die by SIGKILL at a chosen point.

Used only by the fault tests, in a process of its own: `start` forks it from a server process
that has imported Dagster and copyjob once (a fresh interpreter spends about 2 s of CPU on those
imports, for each of the suite's ~60 runs), or from a shell:

    python fault_runner.py JOB_FILE POINT NTH SLOW_SECONDS

POINT is one of:
  none          run normally
  batch         die as the NTH batch streams from the source into the open write
  read          run normally, and note each batch read (`Runner.batches_read`): the test
                kills the run from outside while it reads
  commit        die just before the NTH commit of a destination transaction
  write-commit  die just before the commit of the NTH destination transaction that changes the
                copied table itself (not a staging table), noting its statements
                (`Runner.landing`)
  replace       die just before the NTH file rename of a Parquet write
  after-commit  die after the destination committed, before Dagster records the watermark
  cdc-apply     (mode: cdc) die as the first change is applied, in the open destination
                transaction
  cdc-after-commit  (mode: cdc) die after the destination committed the changes, before
                Dagster records the position
  cdc-advance   (mode: cdc) die after Dagster recorded the position, before the slot moves
  delta-during  die as the NTH batch goes into a Delta write (files written, no commit yet)
  delta-before  die once a Delta write has taken its last batch, just before it commits (a
                merge written file by file: with its files written, at its commit)
  delta-after   die right after a Delta commit, before the store reads its version back
SLOW_SECONDS sleeps that long per batch, so that a test can cut connections mid-copy.

HOOKS (started from a test only, see `hooks.py`) note where a run is for the test to wait on
(`Runner.noted`), hold a run at a point until the test lets it go (`Runner.go`), or switch a
protection off in this process for a negative control.
"""

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from copyjob_dagster.defs import assets
from copyjob_dagster.defs import cdc as cdc_assets
from copyjob_dagster.engine import load_job, rows
from copyjob_dagster.stores import change_apply

try:
    from . import hooks as test_hooks
except ImportError:  # run from a shell as a script
    import hooks as test_hooks  # type: ignore[no-redef]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _batches_file() -> Path:
    return Path(os.environ["DAGSTER_HOME"]).parent / f"batches_{os.getpid()}"


_CHANGES = "fault_runner_changes"


def _changes_of(table: str) -> re.Pattern[str]:
    """Statements that change `table` itself: its name as a whole identifier (a staging
    table's name holds it after an underscore)."""
    return re.compile(
        r"\s*(INSERT|UPDATE|DELETE|REPLACE|RENAME|ALTER|DROP|COPY|MERGE)\b"
        rf".*(?<![\w]){re.escape(table)}(?![\w])",
        re.IGNORECASE | re.DOTALL,
    )


def _landing_file() -> Path:
    return Path(os.environ["DAGSTER_HOME"]).parent / f"landing_{os.getpid()}"


def install(point: str, nth: int, slow: float, destination_url: str, table: str) -> None:
    original_count = rows.RowCounter.count

    def count(self, batches):  # type: ignore[no-untyped-def]
        for index, batch in enumerate(original_count(self, batches), start=1):
            if point == "batch" and index == nth:
                die()
            if point == "read":
                with _batches_file().open("a") as noted:
                    noted.write(f"{index}\n")
            if slow:
                time.sleep(slow)
            yield batch

    rows.RowCounter.count = count

    commits = {"n": 0}
    original_commit = sa.engine.Transaction.commit
    destination_database = (
        sa.engine.make_url(destination_url).database if "://" in destination_url else None
    )

    changes = _changes_of(table)

    def note(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if changes.match(statement):
            conn.info.setdefault(_CHANGES, []).append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", note)
    sa.event.listen(sa.engine.Engine, "rollback", lambda conn: conn.info.pop(_CHANGES, None))

    def commit(self):  # type: ignore[no-untyped-def]
        if self.connection.engine.url.database == destination_database:
            written = self.connection.info.pop(_CHANGES, [])
            counts = point == "commit" or (point == "write-commit" and written)
            commits["n"] += bool(counts)
            if counts and commits["n"] == nth:
                _landing_file().write_text("\n".join(" ".join(line.split()) for line in written))
                die()
        return original_commit(self)

    sa.engine.Transaction.commit = commit

    renames = {"n": 0}
    original_replace = os.replace

    def replace(source, target):  # type: ignore[no-untyped-def]
        if point == "replace" and str(target).endswith(".parquet"):
            renames["n"] += 1
            if renames["n"] == nth:
                die()
        return original_replace(source, target)

    os.replace = replace

    if point.startswith("delta-"):
        _install_delta(point, nth)

    original_copy = assets.copy_table

    def copy_then_die(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = original_copy(*args, **kwargs)
        if point == "after-commit":
            die()
        return result

    assets.copy_table = copy_then_die
    _install_cdc(point)


def _install_cdc(point: str) -> None:
    """The kill points of `mode: cdc` runs."""
    for entry in ("change", "changes"):  # one change, or a batch of them
        original_entry = getattr(change_apply.KeyedChanges, entry)

        def change(self, *args, original_entry=original_entry, **kwargs):  # type: ignore[no-untyped-def]
            if point == "cdc-apply":
                die()
            return original_entry(self, *args, **kwargs)

        setattr(change_apply.KeyedChanges, entry, change)
    original_capture = cdc_assets.capture_changes

    def capture(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = original_capture(*args, **kwargs)
        if point == "cdc-after-commit" and result.position_before is not None:
            die()
        return result

    cdc_assets.capture_changes = capture
    original_confirm = cdc_assets.confirm_position

    def confirm(*args, **kwargs):  # type: ignore[no-untyped-def]
        if point == "cdc-advance":
            die()
        return original_confirm(*args, **kwargs)

    cdc_assets.confirm_position = confirm


def _install_delta(point: str, nth: int) -> None:
    """Kill points around the one commit of a Delta write (stores/delta.py, delta_merge.py,
    delta_rewrite.py)."""
    from deltalake import DeltaTable

    from copyjob_dagster.stores import delta, delta_merge

    original_as_delta = delta.as_delta
    original_rewrite = delta.rewrite
    rewriting: list[bool] = []  # a file-by-file merge reads its window before its other files

    def as_delta(batches, schema):  # type: ignore[no-untyped-def]
        def watched():  # type: ignore[no-untyped-def]
            for index, batch in enumerate(batches, start=1):
                if point == "delta-during" and index == nth:
                    die()
                yield batch
            if point == "delta-before" and not rewriting:
                die()

        return original_as_delta(watched(), schema)

    def rewrite(*args, **kwargs):  # type: ignore[no-untyped-def]
        rewriting.append(True)
        return original_rewrite(*args, **kwargs)

    original_commit = DeltaTable.create_write_transaction

    def commit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if point == "delta-before":
            die()
        return original_commit(self, *args, **kwargs)

    delta.as_delta = as_delta
    delta_merge.as_delta = as_delta
    delta.rewrite = rewrite
    DeltaTable.create_write_transaction = commit
    original_record = delta.DeltaStore._record

    def record(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if point == "delta-after":
            die()
        return original_record(self, *args, **kwargs)

    delta.DeltaStore._record = record


def run(job_file: str, point: str, nth: int, slow: float, hooks: tuple[str, ...] = ()) -> int:
    job = load_job(Path(job_file))
    install(point, nth, slow, job.destination.url, job.tables[0].destination_name)
    test_hooks.install(hooks, _note_file)
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [*assets.build_source_specs([job]), *assets.build_copy_assets([job])],
            instance=instance,
            raise_on_error=False,
        )
    return 0 if result.success else 1


def _note_file(name: str) -> Path:
    return Path(os.environ["DAGSTER_HOME"]).parent / f"{name}_{os.getpid()}"


def _forked(
    arguments: tuple[str, str, int, float, tuple[str, ...]], home: str, errors: str
) -> None:
    """In the forked process: its own DAGSTER_HOME, stderr into a file, exit with run's code."""
    os.environ["DAGSTER_HOME"] = home
    descriptor = os.open(errors, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(descriptor, 2)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own
    sys.exit(run(*arguments))


_SERVER = multiprocessing.get_context("forkserver")
_SERVER.set_forkserver_preload([__name__])


class Runner:
    """A run in a process of its own, with the part of subprocess.Popen the tests use."""

    def __init__(
        self,
        job_file: Path,
        point: str,
        nth: int,
        slow: float,
        home: Path,
        errors: Path,
        hooks: tuple[str, ...] = (),
    ) -> None:
        self._errors, self._home = errors, home
        self._process = _SERVER.Process(
            target=_forked,
            args=((str(job_file), point, nth, slow, hooks), str(home), str(errors)),
        )
        self._process.start()
        self.pid = self._process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(str(self._errors), timeout)
        return self._process.exitcode

    def send_signal(self, number: int) -> None:
        os.kill(self.pid, number)

    def batches_read(self) -> int:
        """How many batches a run started with point `read` has read so far."""
        noted = self._home.parent / f"batches_{self.pid}"
        return len(noted.read_text().split()) if noted.exists() else 0

    def landing(self) -> str:
        """What the transaction a `write-commit` run died in had run: its changing statements."""
        landed = self._home.parent / f"landing_{self.pid}"
        return landed.read_text() if landed.exists() else ""

    def noted(self, name: str) -> int | None:
        """When (time.time_ns) the run noted `name` (see `hooks.py`); None if it has not."""
        note = self._home.parent / f"{name}_{self.pid}"
        text = note.read_text() if note.exists() else ""
        return int(text) if text.strip() else None

    def wait_for_note(self, *names: str, timeout: float = 120) -> str | None:
        """Wait until the run notes one of `names` (returned), or ends (None)."""
        deadline = time.monotonic() + timeout
        while True:
            for name in names:
                if self.noted(name) is not None:
                    return name
            if self.poll() is not None:
                return None
            assert time.monotonic() < deadline, f"the run never noted {names}: {self.errors()}"
            time.sleep(0.005)

    def go(self) -> None:
        """Let a run held by the `hold` hook go on."""
        (self._home.parent / f"go_{self.pid}").write_text("go")

    def errors(self) -> str:
        """The end of what the run wrote to stderr."""
        return self._errors.read_text(errors="replace")[-3000:] if self._errors.exists() else ""


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
