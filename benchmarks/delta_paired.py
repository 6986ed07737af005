"""Two versions of copyjob's Delta store side by side, paired in one invocation: each round
runs both (A B B A) on one PostgreSQL `orders` table, through `delta.py`'s jobs and child
process. `--before` is a checkout of the other code (`git worktree add /tmp/main main`), put
first on PYTHONPATH; this checkout is "after" (put first on PYTHONPATH too, so that a venv
installed from another checkout still runs this one's code), and runs the PostgreSQL merges.

    .venv/bin/python benchmarks/delta_paired.py --before /tmp/main --rows 2000000 --repeat 3

Per version: the Delta full copy at the given rows and a tenth of them, and a merge of 20,000
changed rows, the newest and every Nth, into a copy of the same initially loaded table; and the
same merges into PostgreSQL. Prints medians, every run, peak RSS and the ratios, and of each
Delta merge the seconds delta-rs's merge itself took and the files it rewrote (the rest of a
run is the engine's work at the source, the same as for the PostgreSQL merge).
`--index-updated-at` indexes the source's incremental column (see `delta.build`).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import uuid

import delta as bench
import sqlalchemy as sa

CHANGED = 20_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="a checkout of the code to compare with")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--index-updated-at", action="store_true")
    args = parser.parse_args()
    codes = {"before": os.path.abspath(args.before), "after": None}
    rows = args.rows
    tag = uuid.uuid4().hex[:8]
    schema, small, target = f"cj_paired_{tag}", f"cj_paired_small_{tag}", f"cj_paired_pg_{tag}"
    engine = sa.create_engine(bench.PG_URL)
    bench.build(engine, schema, rows, args.index_updated_at)
    bench.build(engine, small, rows // 10, args.index_updated_at)
    changed = {"newest": f"id > {rows - CHANGED}", "spread": f"id % {rows // CHANGED} = 0"}
    runs: dict[tuple[str, str], list[dict]] = {}
    work = tempfile.mkdtemp(prefix="copyjob-paired-")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {target}"))
        database = bench.job(schema, bench.PG_URL, "incremental", target)
        database_initial = _run({"job": database}, None)
        initial = {
            version: _run(
                {"job": bench.job(schema, f"delta:///{work}/{version}/x", "incremental")}, code
            )
            for version, code in codes.items()
        }
        for round_number in range(args.repeat):
            order = list(codes) if round_number % 2 == 0 else list(codes)[::-1]
            for version in order:
                for name, source in (("full", schema), ("full, a tenth", small)):
                    shutil.rmtree(f"{work}/full", ignore_errors=True)
                    job = bench.job(source, f"delta:///{work}/full", "full")
                    runs.setdefault((version, name), []).append(_run({"job": job}, codes[version]))
            for kind, where in changed.items():
                _update(engine, schema, where, on=True)
                for version in order:
                    shutil.rmtree(f"{work}/merge", ignore_errors=True)
                    shutil.copytree(f"{work}/{version}", f"{work}/merge")
                    job = bench.job(schema, f"delta:///{work}/merge/x", "incremental")
                    spec = {"job": job, "watermark": initial[version]["watermark"]}
                    measured = _run(spec, codes[version])
                    assert measured["commit"]["updated"] == CHANGED, measured
                    runs.setdefault((version, kind), []).append(measured)
                spec = {"job": database, "watermark": database_initial["watermark"]}
                runs.setdefault(("postgresql", kind), []).append(_run(spec, None))
                _update(engine, schema, where, on=False)
    finally:
        with engine.begin() as conn:
            for dropped in (schema, small, target):
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {dropped} CASCADE"))
        engine.dispose()
        shutil.rmtree(work, ignore_errors=True)
    lines = _report(runs, rows, args.repeat, list(codes), list(changed))
    if args.index_updated_at:
        lines.insert(0, "source indexed on its incremental column (updated_at)")
    print("\n".join(lines))


HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(spec: dict, code: str | None) -> dict:
    os.environ["PYTHONPATH"] = code or HERE
    return bench.run(spec)


def _update(engine: sa.Engine, schema: str, where: str, on: bool) -> None:
    values = (
        "status = 'changed', updated_at = timestamptz '2030-01-01' + id * interval '1 microsecond'"
        if on
        else "status = 'x', updated_at = created_at"
    )
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {schema}.orders SET {values} WHERE {where}"))


def _report(
    runs: dict[tuple[str, str], list[dict]],
    rows: int,
    repeat: int,
    versions: list[str],
    kinds: list[str],
) -> list[str]:
    median = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    peak = {k: max(r["rss_mb"] for r in v) for k, v in runs.items()}
    load = tuple(round(x, 2) for x in os.getloadavg())
    lines = [f"{rows:,} rows, {CHANGED:,} changed, {repeat} rounds (ABBA); load average {load}"]
    for key in sorted(runs):
        seconds = [round(r["seconds"], 2) for r in runs[key]]
        lines.append(
            f"{key[0]:10} {key[1]:14} {median[key]:6.2f} s {seconds}  peak RSS {peak[key]:.0f} MB"
        )
        merges = [m for r in runs[key] for m in r.get("delta_merge") or ()]
        if merges:
            own = statistics.median(m["seconds"] for m in merges)
            lines.append(
                f"{'':25} of which delta-rs's merge {own:.2f} s (median), files rewritten "
                f"{merges[0]['num_target_files_removed']}, rows copied "
                f"{merges[0]['num_target_rows_copied']:,}"
            )
    for version in versions:
        full = median[(version, "full")]
        for kind in kinds:
            merge = median[(version, kind)]
            lines.append(
                f"{version}: merge of the {kind} rows / full copy {merge / full:.2f}x, "
                f"/ PostgreSQL merge {merge / median[('postgresql', kind)]:.2f}x"
            )
        big, tenth = peak[(version, "full")], peak[(version, "full, a tenth")]
        lines.append(
            f"{version}: peak RSS of the full copy {big:.0f} MB, a tenth {tenth:.0f} MB: "
            f"{big / tenth:.2f}x"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
