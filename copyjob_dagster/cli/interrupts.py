"""Ctrl-C during `copyjob run`: one line saying what was stopped and what was left unchanged.

A terminal's Ctrl-C reaches every process of its foreground group: here Dagster's step
processes and their log tailers too, each of which printed its own traceback. So the run
executes in a child process of its own group, and this process, alone in the terminal's group,
passes the interrupt on to that child only; Dagster then stops the steps as it stops a run
(each rolls its table back), and the child prints the one line.
"""

import io
import os
import signal
import sys
import traceback
from collections.abc import Callable

import click
import dagster as dg

from copyjob_dagster.errors import CopyJobError

INTERRUPTIONS = frozenset({"DagsterExecutionInterruptedError", "KeyboardInterrupt"})


_told: list[int] = []  # in the child: the pipe on which the parent says it was interrupted


def apart_from_terminal(body: Callable[[], None]) -> None:
    """Run `body` in a forked child in a process group of its own, and exit with its status,
    when this process is in a terminal's foreground (where Ctrl-C reaches a whole group);
    elsewhere (a script, a test's runner) run it here."""
    if not _in_terminal_foreground():
        body()
        return
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(write)
        os.set_blocking(read, False)
        _told[:] = [read]
        os._exit(_child(body))
    os.close(read)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except KeyboardInterrupt:
            os.write(write, b"!")
            os.kill(child, signal.SIGINT)
    sys.exit(os.waitstatus_to_exitcode(status))


def _in_terminal_foreground() -> bool:
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


def interrupted() -> bool:
    """Whether the person pressed Ctrl-C while `apart_from_terminal` ran this child."""
    try:
        return bool(_told) and bool(os.read(_told[0], 1))
    except BlockingIOError:
        return False


def _child(body: Callable[[], None]) -> int:
    code = 0
    try:
        os.setpgid(0, 0)
        body()
    except CopyJobError as exc:
        click.echo(f"error: {exc}", err=True)
        code = 1
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:  # before the run started: nothing was written
        click.echo("interrupted before the run started: nothing was copied", err=True)
        code = 130
    except BaseException:  # noqa: BLE001 - shown as Python would, then the child's status
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def is_interruption(event: dg.DagsterEvent) -> bool:
    """Whether a step failed because the run was interrupted (not by an error of its own)."""
    error = event.step_failure_data.error
    return error is not None and error.cls_name in INTERRUPTIONS
