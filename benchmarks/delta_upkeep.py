"""What a Delta table's upkeep (`maintenance:`, `copyjob maintain`) costs and buys.

A table is built as copyjob's incremental appends build it: one commit and one small file per
run (`--runs` windows of `--rows-per-run` rows, copyjob's writer settings and table
properties). Measured: reading the whole table, a run's check of whether upkeep is due (the
table's history, on every run of a table with `maintenance:`), the upkeep itself (compaction,
vacuum, expired logs), then reading the whole table again.

    python delta_upkeep.py [--runs 100] [--rows-per-run 2000] [--repeat 3]
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from copyjob_dagster.stores.delta import DeltaStore
from copyjob_dagster.stores.delta_layout import TABLE_PROPERTIES, WRITER
from copyjob_dagster.stores.delta_upkeep import commits_since_upkeep


def window(run: int, rows: int) -> pa.Table:
    ids = range(run * rows, (run + 1) * rows)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "customer_id": pa.array([i % 5000 for i in ids], pa.int64()),
            "amount": pa.array([(i % 997) / 10 for i in ids]),
            "status": pa.array([("new", "paid", "sent")[i % 3] for i in ids]),
            "updated_at": pa.array(ids, pa.int64()),
        }
    )


def seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rows-per-run", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="copyjob-upkeep-") as folder:
        path = str(Path(folder) / "orders")
        for run in range(args.runs):
            write_deltalake(
                path,
                window(run, args.rows_per_run),
                mode="append",
                writer_properties=WRITER,
                configuration=TABLE_PROPERTIES if run == 0 else None,
            )
        table = DeltaTable(path)
        files_before = len(table.file_uris())
        read_before = seconds(lambda: DeltaTable(path).to_pyarrow_table(), args.repeat)
        due_check = seconds(lambda: commits_since_upkeep(DeltaTable(path), 20), args.repeat)
        store = DeltaStore(f"delta:///{folder}", "destination")
        started = time.perf_counter()
        done = store.maintain("orders", 1, None, now=True)
        upkeep = time.perf_counter() - started
        table = DeltaTable(path)
        read_after = seconds(lambda: DeltaTable(path).to_pyarrow_table(), args.repeat)
        rows = table.count()
    print(
        f"{args.runs} runs of {args.rows_per_run:,} rows ({rows:,} rows)\n"
        f"files in the latest version: {files_before} before, {len(table.file_uris())} after "
        f"({done})\n"
        f"read the whole table: {read_before:.3f} s before, {read_after:.3f} s after\n"
        f"a run's due check (history of up to 22 commits): {due_check * 1000:.1f} ms\n"
        f"the upkeep (compaction, vacuum, expired logs): {upkeep:.3f} s"
    )


if __name__ == "__main__":
    main()
