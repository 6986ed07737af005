"""Runs whose process is gone.

A `copyjob run` executes its run in its own process, and a process killed with SIGKILL (or by
the OOM killer, or with its machine) records no end: the run would stay "started" for good, as
nothing watches it (Dagster's run monitoring watches runs its launchers start, not runs executed
by the caller). So `copyjob run` tags its run with the machine, the process id and the process's
start time, and `copyjob history` and `copyjob list` mark failed each unfinished run of this
machine whose process no longer exists. The start time tells a reused process id apart.
"""

import os
import socket
from pathlib import Path

import dagster as dg

HOST_TAG = "copyjob/host"
PID_TAG = "copyjob/pid"
PROCESS_START_TAG = "copyjob/process_start"  # clock ticks after boot (Linux /proc)
PARENT_RUN_TAG = "dagster/parent_run_id"
_UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
_TAG_LENGTH = 63  # Dagster's limit on a tag value
_STATE, _START = 0, 19  # fields 3 and 22 of /proc/PID/stat: "Z" is a zombie; start in ticks


def process_tags() -> dict[str, str]:
    """Tags naming the process that executes a run, for `mark_interrupted_runs`."""
    tags = {HOST_TAG: _host(), PID_TAG: str(os.getpid())}
    stat = _stat(os.getpid())
    if stat is not None:
        tags[PROCESS_START_TAG] = stat[_START]
    return tags


def mark_interrupted_runs(instance: dg.DagsterInstance) -> list[str]:
    """Report as failed the unfinished runs of this machine whose process is gone; their ids."""
    host = _host()
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=_UNFINISHED, tags={HOST_TAG: host})
    )
    marked = []
    for record in records:
        run = record.dagster_run
        pid = run.tags.get(PID_TAG, "")
        # A re-execution (the UI's, the daemon's retries) inherits the tags of the `copyjob run`
        # it re-executes, this process's among them, but a run launcher executes it.
        if (
            PARENT_RUN_TAG in run.tags
            or not pid.isdigit()
            or _alive(int(pid), run.tags.get(PROCESS_START_TAG))
        ):
            continue
        instance.report_run_failed(
            run,
            message=(
                f"interrupted: the process running it (pid {pid} on {host}) ended before the "
                f"run did, killed or lost; nothing it left uncommitted was kept, and the "
                f"watermark is the last committed copy's"
            ),
        )
        marked.append(run.run_id)
    return marked


def _host() -> str:
    return socket.gethostname()[:_TAG_LENGTH]


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process of that id
    stat = _stat(pid)
    if stat is None:
        return True  # no /proc: the id alone
    return stat[_STATE] != "Z" and (started is None or stat[_START] == started)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the process's name (which may hold spaces)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
