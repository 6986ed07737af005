"""One table through `copyjob run`, against importing Dagster and the project (issue 16's goal:
at most 1.5× `python -c "import dagster, copyjob_dagster.definitions"`).

Builds a scratch source database of one table × `--rows` rows on the PostgreSQL server of
COPYJOB_TEST_PG_URL and a scratch destination database, a job copying it (full), and a fresh
SQLite instance; runs `copyjob run` once to create the instance's tables, then `--repeat` times
each of `copyjob run one` and the import, in turns (ABBA). Prints the median wall and CPU
seconds (user + system of the process and its children) of each, their ratios, and the load
average before and after. `--project-tables N` puts the job among others, as in a real project:
a second job of N more tables in the same folder (copied once before the measured runs, so the
instance holds their history). Everything it made is dropped at the end.

    .venv/bin/python benchmarks/one_table.py               # 5 of each
    .venv/bin/python benchmarks/one_table.py --repeat 9 --project-tables 200
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from many_tables import PROJECT, _fill, _loadavg, scratch_databases, timed  # noqa: E402

COPYJOB = Path(sys.executable).parent / "copyjob"
IMPORT = [sys.executable, "-c", "import dagster, copyjob_dagster.definitions"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--project-tables", type=int, default=0)
    args = parser.parse_args()
    with scratch_databases("cj_one") as (source, target):
        _fill(source, 1 + args.project_tables, args.rows)
        with tempfile.TemporaryDirectory(prefix="copyjob_one_") as scratch:
            _measure(Path(scratch), source, target, args)


def _measure(root: Path, source: sa.URL, target: sa.URL, args: argparse.Namespace) -> None:
    home, jobs = root / "home", root / "jobs"
    home.mkdir()
    jobs.mkdir()
    (home / "dagster.yaml").write_text((PROJECT / "dagster.yaml").read_text())
    plain = {"src": source, "dst": target}
    src, dst = (plain[k].render_as_string(hide_password=False) for k in ("src", "dst"))
    (jobs / "one.yaml").write_text(
        f"name: one\nsource: {{url: '{src}'}}\ndestination: {{url: '{dst}'}}\n"
        f"mode: full\ntables:\n  - name: t000\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": str(jobs)}
    if args.project_tables:
        others = "".join(f"  - name: t{i:03d}\n" for i in range(1, 1 + args.project_tables))
        (jobs / "others.yaml").write_text(
            f"name: others\nsource: {{url: '{src}'}}\n"
            f"destination: {{url: '{dst}', schema: others}}\nmode: full\ntables:\n{others}"
        )
        with sa.create_engine(target).begin() as conn:
            conn.execute(sa.text("CREATE SCHEMA others"))
        timed([str(COPYJOB), "run", "others"], env)
    run = [str(COPYJOB), "run", "one"]
    timed(run, env)  # the instance's tables, created once
    load_before = _loadavg()
    runs, imports = [], []
    for round_ in range(args.repeat):
        for measured in [runs, imports] if round_ % 2 == 0 else [imports, runs]:
            measured.append(timed(run if measured is runs else IMPORT, env))
    load_after = _loadavg()
    wall = [statistics.median(w for w, _ in m) for m in (runs, imports)]
    cpu = [statistics.median(c for _, c in m) for m in (runs, imports)]
    among = f", among {args.project_tables} other tables" if args.project_tables else ""
    print(f"1 table × {args.rows:,} rows PG → PG, full{among}; median of {args.repeat}")
    print(f"load average before: {load_before}; after: {load_after}")
    print("| | wall s | CPU s |\n|---|---|---|")
    print(f"| `copyjob run` | {wall[0]:.2f} | {cpu[0]:.2f} |")
    print(f"| `python -c '{IMPORT[-1]}'` | {wall[1]:.2f} | {cpu[1]:.2f} |")
    print(f"| ratio | {wall[0] / wall[1]:.2f}× | {cpu[0] / cpu[1]:.2f}× |")
    pairs = list(zip(runs, imports, strict=True))
    paired = [statistics.median(r[i] / m[i] for r, m in pairs) for i in (0, 1)]
    print(f"| median of the rounds' ratios | {paired[0]:.2f}× | {paired[1]:.2f}× |")
    print("all wall:", [round(w, 2) for w, _ in runs], [round(w, 2) for w, _ in imports])


if __name__ == "__main__":
    main()
