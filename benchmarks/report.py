"""The printed tables, the goals, and the machine they were measured on, as Markdown."""

import datetime
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
    copy_seconds: float | None = None  # overrides the median (copyjob run, fixed cost removed)
    note: str = ""  # printed under the table
    error: str = ""
    fixed_cost: bool = False  # the one-row run subtracted from copyjob run: no ratio

    @property
    def seconds(self) -> float | None:
        if self.copy_seconds is not None:
            return self.copy_seconds
        return self.measured.copy_seconds if self.measured and self.measured.samples else None


@dataclass
class PairingResult:
    pairing: str
    title: str
    rows: list[Row] = field(default_factory=list)

    @property
    def reference_seconds(self) -> float | None:
        for row in self.rows:
            if row.reference and not row.error:
                return row.seconds
        return None

    def row(self, way: str) -> Row | None:
        return next((r for r in self.rows if r.way == way and not r.error), None)


def _rows_copied(row: Row) -> str:
    if row.measured is None or not row.measured.samples:
        return "-"
    counts = row.measured.rows
    text = " / ".join(f"{c:,}" for c in sorted(counts))
    return text if counts == {row.expected_rows} else f"{text} (expected {row.expected_rows:,})"


def pairing_table(result: PairingResult) -> str:
    reference = result.reference_seconds
    lines = [
        f"### {result.title}",
        "",
        "| way | rows copied | wall s (median) | rows/s | vs reference | process s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result.rows:
        name = row.way.replace("|", "\\|") + (" (reference)" if row.reference else "")
        if row.error:
            lines.append(f"| {name} | failed: {row.error} | | | | | |")
            continue
        seconds = row.seconds
        assert row.measured is not None and seconds is not None
        ratio = f"{seconds / reference:.2f}×" if reference and not row.fixed_cost else "-"
        rate = f"{row.expected_rows / seconds:,.0f}" if seconds > 0 and not row.fixed_cost else "-"
        lines.append(
            f"| {name} | {_rows_copied(row)} | {seconds:.2f} | {rate} | {ratio} | "
            f"{row.measured.process_seconds:.2f} | {row.measured.peak_rss / MB:.0f} |"
        )
    notes = [f"- {row.way}: {row.note}" for row in result.rows if row.note and not row.error]
    return "\n".join(lines + ([""] + notes if notes else []))


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
        f"- PostgreSQL: {_pg_version(settings)}; MariaDB: {_my_version(settings)}",
        f"- data set: {settings.rows:,} rows of `orders` (10 columns), built with generate_series",
    ]


def _pg_version(settings: Settings) -> str:
    from dataset import pg_connect

    with pg_connect(settings, "postgres") as conn:
        return conn.execute("SHOW server_version").fetchone()[0].split()[0]


def _my_version(settings: Settings) -> str:
    from dataset import my_connect

    with my_connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return cur.fetchone()[0]
