"""What a no-op incremental run costs: `copyjob run` of many tables when nothing changed.

Builds a scratch source database of `--tables` tables × `--rows` rows and a scratch destination
database on the PostgreSQL server of COPYJOB_TEST_PG_URL, a job that copies them incrementally
(`updated_at`, key `id`, as `many_vs_sling.py` does), runs it once (the initial load, timed
apart), then `--rounds` times more with nothing changed at the source, and prints each no-op
run's wall and CPU seconds (of `copyjob run` and what it waited for) with the load average
before and after, then their median. Every database it made is dropped at the end.

    .venv/bin/python benchmarks/noop_tables.py                    # 50 tables, 3 no-op runs
    .venv/bin/python benchmarks/noop_tables.py --tables 200 --rounds 1
    .venv/bin/python benchmarks/noop_tables.py --wrap "python -m pyinstrument -o p.txt"

`--wrap` runs each no-op run under the given command (a profiler): its words come before
`copyjob`'s own (`copyjob` is then passed as the path of its script).
"""

import argparse
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from many_tables import PROJECT, _fill, _loadavg, scratch_databases, timed  # noqa: E402

COPYJOB = Path(sys.executable).parent / "copyjob"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument("--rows", type=int, default=1000, help="rows per table")
    parser.add_argument("--rounds", type=int, default=3, help="no-op runs (the median is shown)")
    parser.add_argument("--parallel", type=int, default=None, help="max_parallel_tables")
    parser.add_argument("--wrap", default="", help="a command to run each no-op run under")
    args = parser.parse_args()
    with scratch_databases("cj_noop") as (source, target):
        _fill(source, args.tables, args.rows)
        with tempfile.TemporaryDirectory(prefix="copyjob_noop_") as scratch:
            _measure(Path(scratch), source, target, args)


def _measure(root: Path, source: sa.URL, target: sa.URL, args: argparse.Namespace) -> None:
    home, jobs = root / "home", root / "jobs"
    home.mkdir()
    jobs.mkdir()
    (home / "dagster.yaml").write_text((PROJECT / "dagster.yaml").read_text())
    parallel = f"max_parallel_tables: {args.parallel}\n" if args.parallel else ""
    tables = "".join(
        f"  - {{name: t{i:03d}, incremental_column: updated_at, primary_key: [id]}}\n"
        for i in range(args.tables)
    )
    (jobs / "noop.yaml").write_text(
        f"name: noop\nsource: {{url: '{_plain(source)}'}}\n"
        f"destination: {{url: '{_plain(target)}', schema: public}}\n"
        f"mode: incremental\n{parallel}tables:\n{tables}"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}
    seconds, cpu, load = _timed([str(COPYJOB), "run", "noop"], env)
    print(f"initial load of {args.tables} tables: {seconds:.2f} s (CPU {cpu:.2f} s), {load}")
    wrap = shlex.split(args.wrap)
    runs = []
    for round_ in range(args.rounds):
        runs.append(_timed([*wrap, str(COPYJOB), "run", "noop"], env))
        seconds, cpu, load = runs[-1]
        print(f"no-op run {round_ + 1}/{args.rounds}: {seconds:.2f} s (CPU {cpu:.2f} s), {load}")
    print(
        f"no-op run of {args.tables} tables, median of {len(runs)}: "
        f"{statistics.median(r[0] for r in runs):.2f} s "
        f"(CPU {statistics.median(r[1] for r in runs):.2f} s)",
        flush=True,
    )


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of the command, and the load average before → after."""
    load = _loadavg()
    seconds, cpu = timed(argv, env)
    return seconds, cpu, f"load {load} → {_loadavg()}"


def _plain(url: sa.URL) -> str:
    return url.render_as_string(hide_password=False)


if __name__ == "__main__":
    main()
