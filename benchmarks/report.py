"""The printed tables, the goals, and the machine they were measured on, as Markdown."""

import datetime
import functools
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from measure import Measured
from settings import Settings

MB = 1024 * 1024


@dataclass
class Row:
    """One way's line in a pairing's table."""

    way: str
    measured: Measured | None
    expected_rows: int
    reference: bool = False
    note: str = ""  # printed under the table
    error: str = ""
    command: bool = False  # a command: its copy time is the whole command's
    whole_only: bool = False  # copyjob run: compared as the whole command only
    # (copy ratio, whole-command ratio, rounds): medians of the ratios to the reference run of
    # the same round (the reference and copyjob's ways); None: ratio of the medians (peers)
    paired: tuple[float, float, int] | None = None

    @property
    def seconds(self) -> float | None:
        return self.measured.copy_seconds if self.measured and self.measured.samples else None

    @property
    def process_seconds(self) -> float | None:
        return self.measured.process_seconds if self.measured and self.measured.samples else None


@dataclass
class PairingResult:
    pairing: str
    title: str
    rows: list[Row] = field(default_factory=list)
    expected_checksum: str = ""
    ddl: str = ""  # the destination table copyjob created, which every way loaded into

    @property
    def reference(self) -> Row | None:
        return next((r for r in self.rows if r.reference and not r.error), None)

    def row(self, way: str) -> Row | None:
        return next((r for r in self.rows if r.way == way and not r.error), None)

    def copy_ratio(self, row: Row) -> float | None:
        """The way's copy time against the reference's. None for `copyjob run` (its copy is
        not timed apart from the command: see `whole_ratio`), and for a command against a
        Python reference timed after its imports (the command's start-up would count)."""
        reference = self.reference
        if reference is None or row.seconds is None or row.whole_only:
            return None
        if row.command and not reference.command:
            return None
        if row.paired is not None:
            return row.paired[0] if row.paired[2] else None
        return row.seconds / reference.seconds if reference.seconds else None

    def whole_ratio(self, row: Row) -> float | None:
        """The whole command (start-up and imports included) against the reference's."""
        reference = self.reference
        if reference is None or row.process_seconds is None:
            return None
        if row.paired is not None:
            return row.paired[1] if row.paired[2] else None
        return row.process_seconds / reference.process_seconds


def _rows_copied(row: Row) -> str:
    if row.measured is None or not row.measured.samples:
        return "-"
    counts = row.measured.rows
    text = " / ".join(f"{c:,}" for c in sorted(counts))
    return text if counts == {row.expected_rows} else f"{text} (expected {row.expected_rows:,})"


def _content(row: Row, expected: str) -> str:
    if row.measured is None or not row.measured.samples:
        return "-"
    same = sum(s.checksum == expected for s in row.measured.samples)
    total = len(row.measured.samples)
    return "same" if same == total else f"DIFFERS ({total - same} of {total} runs)"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}×" if value is not None else "-"


def pairing_table(result: PairingResult) -> str:
    lines = [
        f"### {result.title}",
        "",
        "| way | runs | rows copied | content | copy s | rows/s | copy vs ref | whole s "
        "| whole vs ref | copy's own growth MB | tree peak RSS MB |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result.rows:
        name = row.way.replace("|", "\\|") + (" (reference)" if row.reference else "")
        if row.error:
            lines.append(f"| {name} | 0 | failed: {row.error} | | | | | | | | |")
            continue
        assert row.measured is not None and row.seconds is not None
        copy = "-" if row.whole_only else f"{row.seconds:.2f}"
        rate = f"{row.expected_rows / row.seconds:,.0f}" if row.seconds > 0 else "-"
        growth = row.measured.growth
        lines.append(
            f"| {name} | {len(row.measured.samples)}{' paired' if row.paired else ''} | "
            f"{_rows_copied(row)} | {_content(row, result.expected_checksum)} | {copy} | "
            f"{rate} | {_ratio(result.copy_ratio(row))} | {row.process_seconds:.2f} | "
            f"{_ratio(result.whole_ratio(row))} | "
            f"{'-' if growth is None else f'{growth / MB:.0f}'} | "
            f"{row.measured.peak_rss / MB:.0f} |"
        )
    notes = [f"- {row.way}: {row.note}" for row in result.rows if row.note and not row.error]
    if result.ddl:
        notes.append(f"- every way loaded into the table copyjob created: {result.ddl}")
    return "\n".join(lines + ([""] + notes if notes else []))


LOADS: list[tuple[float, float, float]] = []  # sampled by `sample_load`, for the report


def sample_load() -> None:
    LOADS.append(os.getloadavg())


def load_note() -> str:
    """The 1-minute load average seen during the runs, on a machine shared with others."""
    if not LOADS:
        return "not sampled."
    ones = sorted(x[0] for x in LOADS)
    return (
        f"the 1-minute load average ranged {ones[0]:.2f}–{ones[-1]:.2f} (median "
        f"{ones[len(ones) // 2]:.2f}) over {len(ones)} samples, one per run, on {os.cpu_count()} "
        "cores shared with other engineers' work: absolute times vary with it; the paired "
        "ratios are what compares."
    )


def machine(settings: Settings) -> list[str]:
    """CPU, cores, memory, server versions, date and load: where the figures come from."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
        "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    memory_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    return [
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {cpu}, {os.cpu_count()} cores; RAM {memory_kb / 1024 / 1024:.0f} GiB; "
        f"{platform.system()} {platform.release()}",
        f"- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- commit measured: {commit_measured()}",
        f"- PostgreSQL: {_pg_version(settings)}; MariaDB: {_my_version(settings)}",
        f"- data set: {settings.rows:,} rows of `orders` (10 columns), built with generate_series",
    ]


@functools.cache
def commit_measured() -> str:
    """The commit the run started at (cached: run.py calls it first, before any way)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True
        ).stdout.strip()

    dirty = (
        " (with uncommitted changes)"
        if git("status", "--porcelain", "--", "../src", ".", ":(exclude)results")
        else ""
    )
    return (git("rev-parse", "--short", "HEAD") or "unknown") + dirty


def _pg_version(settings: Settings) -> str:
    from dataset import pg_connect

    with pg_connect(settings, "postgres") as conn:
        return conn.execute("SHOW server_version").fetchone()[0].split()[0]


def _my_version(settings: Settings) -> str:
    from dataset import my_connect

    with my_connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return cur.fetchone()[0]
