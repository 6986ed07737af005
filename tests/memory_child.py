"""Run by tests/test_memory.py in a process of its own: build a SQLite table of ROWS narrow rows,
copy it to Parquet with the engine, and print the copy's own peak memory above its baseline.

    python memory_child.py FOLDER ROWS

The baseline is taken after the imports and after a 10-row copy of the same shape (so the
modules a copy loads on first use are loaded), the peak is reset there (/proc/self/clear_refs,
`5`), and the copy's peak is VmHWM. Prints one JSON line: rows written, baseline and peak bytes.
"""

import json
import sqlite3
import sys
from pathlib import Path

from copyjob_dagster.config import CopyJob
from copyjob_dagster.engine import copy_table


def _memory(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def _source(path: Path, rows: int) -> None:
    """`narrow(id, amount, code)`: an integer key, a small integer, a 7-character text."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE narrow (id INTEGER PRIMARY KEY, amount INTEGER, code TEXT)")
    db.execute(
        "INSERT INTO narrow WITH RECURSIVE n(i) AS "
        "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "SELECT i, i * 7 % 1000, printf('c%06d', i % 100000) FROM n",
        (rows,),
    )
    db.commit()
    db.close()


def _job(source: Path, lake: Path) -> CopyJob:
    return CopyJob.model_validate(
        {
            "name": "memory",
            "mode": "full",
            "source": {"url": f"sqlite:///{source}"},
            "destination": {"url": str(lake)},
            "tables": [{"name": "narrow"}],
        }
    )


def main(folder: Path, rows: int) -> None:
    _source(folder / "warm.sqlite", 10)
    _source(folder / "source.sqlite", rows)
    warm = _job(folder / "warm.sqlite", folder / "warm_lake")
    copy_table(warm, warm.tables[0], None)
    job = _job(folder / "source.sqlite", folder / "lake")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
    baseline = _memory("VmRSS")
    written = copy_table(job, job.tables[0], None).rows_written
    print(json.dumps({"rows": written, "baseline": baseline, "peak": _memory("VmHWM")}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
