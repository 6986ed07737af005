"""Run one way in a process of its own and measure its wall time and peak memory.

A Python way (child.py) also reports its copy's own memory: its high-water mark during the
copy above its resident set after the imports.

Peak RSS is the larger of two readings from /proc, sampled every few milliseconds: the sum of
the resident sets of the whole process tree (a pipe of two `psql`, a Dagster run and its step
process), and the largest single process's own high-water mark (VmHWM). The kernel's
ru_maxrss is no use here: it counts the harness's own pages, inherited at fork, before exec.
"""

import contextlib
import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_SECONDS = 0.01
ATTEMPTS = 3


class WayFailed(RuntimeError):
    """A way's process exited with an error, or ran out of time."""


@dataclass
class Sample:
    """One run of one way."""

    process_seconds: float  # the whole process, start-up and imports included
    copy_seconds: float  # what the way reports for its copy (the whole process for commands)
    peak_rss: int  # bytes
    rows: int = 0
    checksum: str = ""  # of the destination's content (content.py)
    baseline: int | None = None  # Python ways: resident bytes after their imports
    growth: int | None = None  # Python ways: the copy's own peak above that baseline


@dataclass
class Measured:
    samples: list[Sample] = field(default_factory=list)

    @property
    def copy_seconds(self) -> float:
        return statistics.median(s.copy_seconds for s in self.samples)

    @property
    def process_seconds(self) -> float:
        return statistics.median(s.process_seconds for s in self.samples)

    @property
    def peak_rss(self) -> int:
        return max(s.peak_rss for s in self.samples)

    @property
    def rows(self) -> set[int]:
        return {s.rows for s in self.samples}

    @property
    def checksums(self) -> set[str]:
        return {s.checksum for s in self.samples}

    @property
    def growth(self) -> int | None:
        """The largest of the copy's own growths (Python ways), None for commands."""
        found = [s.growth for s in self.samples if s.growth is not None]
        return max(found) if found else None

    @property
    def baseline(self) -> int | None:
        found = [s.baseline for s in self.samples if s.baseline is not None]
        return statistics.median(found) if found else None


def run_measured(
    argv: list[str], env: dict[str, str], timeout: float, reports_time: bool
) -> Sample:
    """Run `argv`; with `reports_time`, its last line of output is JSON holding `seconds`."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
        )
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.start()
        try:
            _, status = os.waitpid(proc.pid, 0)
            elapsed = time.perf_counter() - started
        except BaseException:
            _kill_group(proc.pid)
            raise
        finally:
            timer.cancel()
            sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join((stderr or stdout).strip().splitlines()[-15:])
        raise WayFailed(f"exit code {proc.returncode} after {elapsed:.1f} s:\n{tail}")
    sample = Sample(process_seconds=elapsed, copy_seconds=elapsed, peak_rss=sampler.peak)
    if reports_time:
        reported = json.loads(stdout.strip().splitlines()[-1])
        sample.copy_seconds = reported["seconds"]
        if "peak" in reported:
            sample.baseline = reported["baseline"]
            sample.growth = max(0, reported["peak"] - reported["baseline"])
    return sample


def run_retried(
    argv: list[str],
    env: dict[str, str],
    timeout: float,
    reports_time: bool = False,
    before: Callable[[], None] | None = None,
) -> Sample:
    """`run_measured`, tried up to ATTEMPTS times: on a shared server, other sessions' fault
    tests end every connection named `copyjob` now and then. `before` runs before each try."""
    for attempt in range(1, ATTEMPTS + 1):
        if before is not None:
            before()
        try:
            return run_measured(argv, env, timeout, reports_time)
        except WayFailed as exc:
            print(f"    failed (attempt {attempt} of {ATTEMPTS}): {exc}", flush=True)
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class _TreeSampler(threading.Thread):
    """Samples the tree: the largest sum of current resident sets, and each process's own
    high-water mark (VmHWM, which catches a peak between two samples)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_sum = 0
        self.high_water: dict[int, int] = {}
        self._done = threading.Event()

    @property
    def peak(self) -> int:
        return max(self.peak_sum, *self.high_water.values(), 0)

    def run(self) -> None:
        while not self._done.is_set():
            total = 0
            for pid, rss, hwm in _tree(self.pid):
                total += rss
                self.high_water[pid] = max(self.high_water.get(pid, 0), hwm)
            self.peak_sum = max(self.peak_sum, total)
            self._done.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _tree(root: int) -> list[tuple[int, int, int]]:
    """(pid, resident bytes, peak resident bytes) of `root` and its descendants alive now."""
    found = []
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            for task in Path(f"/proc/{pid}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        fields = {line.split(":")[0]: line.split()[1] for line in status if line.startswith("Vm")}
        found.append((pid, int(fields.get("VmRSS", 0)) * 1024, int(fields.get("VmHWM", 0)) * 1024))
    return found
