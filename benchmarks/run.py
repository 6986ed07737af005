"""Copy the same `orders` table every way we know, side by side, and print one table per
pairing: median wall time, rows/s, the ratio to the pairing's reference, peak RSS.

    .venv/bin/python benchmarks/run.py                  # 2,000,000 rows, 3 runs of each way
    .venv/bin/python benchmarks/run.py --rows 200000 --repeat 1 --no-pandas

Run it with the project's virtualenv: copyjob's own ways run there; the peer tools (Sling,
dlt, DuckDB, connectorx, ADBC, asyncpg, pandas) run in `benchmarks/.peers`, made on first use
from `benchmarks/requirements-peers.txt`. See benchmarks/README.md.
"""

import argparse
import sys
from pathlib import Path

import dataset
import delta
import goals
import jobs
import peers
from measure import Measured, Sample, WayFailed, run_retried
from report import MB, PairingResult, Row, machine, pairing_table
from settings import BENCH_DIR, Settings
from ways import COPYJOB_RUN, PAIRINGS, Way, copyjob_run, environment, job_name, ways_for


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_environment(args.rows, args.prefix, Path(args.workdir))
    pairings = args.pairings.split(",") if args.pairings else list(PAIRINGS)
    unknown = [p for p in pairings if p not in PAIRINGS]
    if unknown:
        print(f"unknown pairing(s) {', '.join(unknown)}; known: {', '.join(PAIRINGS)}")
        return 2
    if args.delta_only:
        lines = delta.measure(args.rows, args.repeat, spread=args.delta_changed == "spread")
        print("\n".join(lines))
        _write_markdown(Path(args.output), settings, args, [], lines)
        return 0
    if not args.no_peers:
        peers.ensure()
    print(f"Building the data set ({settings.rows:,} rows) unless it is already there ...")
    dataset.prepare(settings, rebuild=args.rebuild)
    jobs.write_jobs(settings)
    jobs.fresh_dagster_home(settings)
    try:
        results, sections = [], []
        for pairing in [] if args.goals_only else pairings:
            results.append(compare(settings, pairing, args))
            sections.append(pairing_table(results[-1]))
            print("\n" + sections[-1] + "\n", flush=True)
            _write_markdown(Path(args.output), settings, args, sections, [])
        goal_lines: list[str] = []
        if args.goals or args.goals_only:
            goal_lines = goals.measure(settings, results, pairings, args.repeat, args.timeout)
            print("\n" + "\n".join(goal_lines))
        if args.delta:
            spread = args.delta_changed == "spread"
            goal_lines += ["", *delta.measure(args.rows, args.repeat, spread=spread)]
            print("\n".join(goal_lines[-6:]))
        _write_markdown(Path(args.output), settings, args, sections, goal_lines)
        print(f"\nwritten to {args.output}")
    finally:
        if args.drop_after:
            dataset.drop_all(settings)
    return 0


def compare(settings: Settings, pairing: str, args: argparse.Namespace) -> PairingResult:
    """Each way of one pairing, `repeat` times, round robin (so drift on a shared machine
    spreads over all ways); copyjob run also copies a one-row table, its fixed cost."""
    chosen = [w for w in ways_for(pairing) if _wanted(w, pairing, args)]
    fixed_cost = Way(f"{COPYJOB_RUN} (one row)", "project", command=copyjob_run)
    has_run = any(w.name == COPYJOB_RUN for w in chosen)
    planned: list[tuple[Way, str, int]] = [
        (w, job_name(pairing, w.variant), settings.rows) for w in chosen
    ]
    if has_run and args.fixed_cost:
        planned.append((fixed_cost, job_name(pairing, "one"), 1))
    measured = {way.name: Measured() for way, _, _ in planned}
    errors: dict[str, list[str]] = {name: [] for name in measured}
    for repeat in range(args.repeat):
        for way, param, _ in planned:
            never_worked = errors[way.name] and not measured[way.name].samples
            if never_worked or (way.group == "pandas" and repeat >= args.pandas_repeat):
                continue
            print(f"[{pairing}] run {repeat + 1}/{args.repeat}: {way.name} ...", flush=True)
            try:
                sample = _run_once(settings, pairing, way, param, args.timeout)
            except WayFailed as exc:
                errors[way.name].append(str(exc).splitlines()[-1][:200])
                continue
            sample.rows = dataset.count_rows(
                settings, pairing, way.count_in(settings) if way.count_in else None
            )
            measured[way.name].samples.append(sample)
            print(
                f"    {sample.copy_seconds:.2f} s, {sample.rows:,} rows, "
                f"{sample.peak_rss / MB:.0f} MB",
                flush=True,
            )
    result = PairingResult(pairing, PAIRINGS[pairing])
    for way, _, expected in planned:
        failures = errors[way.name]
        worked = bool(measured[way.name].samples)
        row = Row(way.name, measured[way.name], expected, way.reference)
        row.error = "" if worked else (failures[0] if failures else "")
        row.fixed_cost = way is fixed_cost
        if worked and failures:
            row.note = f"{len(failures)} round(s) failed (median of the others): {failures[0]}"
        fixed_runs = measured.get(fixed_cost.name)
        if way.name == COPYJOB_RUN and not row.error and fixed_runs and fixed_runs.samples:
            fixed = measured[fixed_cost.name].process_seconds
            row.copy_seconds = max(0.0, measured[way.name].process_seconds - fixed)
            row.note += (" " if row.note else "") + (
                f"wall = the whole command ({measured[way.name].process_seconds:.2f} s) minus "
                f"its fixed cost, the same command copying a one-row table ({fixed:.2f} s)"
            )
        result.rows.append(row)
    return result


def _run_once(settings: Settings, pairing: str, way: Way, param: str, timeout: float) -> Sample:
    """One run into an empty destination (retried: see `run_retried`)."""
    return run_retried(
        way.argv(settings, param),
        environment(settings, param),
        timeout,
        reports_time=way.python is not None,
        before=lambda: dataset.reset_destinations(settings, pairing),
    )


def _wanted(way: Way, pairing: str, args: argparse.Namespace) -> bool:
    if args.no_peers and way.needs_peers:
        return False
    if args.no_pandas and way.group == "pandas":
        return False
    return way.name != COPYJOB_RUN or pairing in args.copyjob_run_on.split(",")


def _write_markdown(
    path: Path,
    settings: Settings,
    args: argparse.Namespace,
    sections: list[str],
    goal_lines: list[str],
) -> None:
    lines = [
        "# copyjob benchmark: latest results",
        "",
        f"`{' '.join(['benchmarks/run.py', *sys.argv[1:]])}`",
        "",
        *machine(settings),
    ]
    if args.note:
        lines += [f"- note: {args.note}"]
    lines += [
        "",
        f"Median of {args.repeat} run(s) of each way. *wall s* is the copy as the way reports it "
        "(Python ways: from after their imports, connections included; commands: the whole "
        "command; `copyjob run`: the whole command minus the median of the same command copying "
        "a one-row table). *process s* is the whole process, start-up and imports included. "
        "*peak RSS* is of the whole process tree, the largest of all runs.",
        "",
    ]
    for section in sections:
        lines += [section, ""]
    if goal_lines:
        lines += goal_lines
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows in orders")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way (median)")
    parser.add_argument("--pairings", help=f"comma-separated subset of {','.join(PAIRINGS)}")
    parser.add_argument(
        "--no-peers", action="store_true", help="only copyjob and the psql/mariadb references"
    )
    parser.add_argument("--no-pandas", action="store_true", help="skip pandas (slow: minutes)")
    parser.add_argument(
        "--pandas-repeat", type=int, default=1, help="runs of pandas (slow; drives no goal)"
    )
    parser.add_argument(
        "--copyjob-run-on",
        default=",".join(PAIRINGS),
        help="pairings on which to time `copyjob run` (each costs two Dagster runs)",
    )
    parser.add_argument(
        "--no-fixed-cost",
        dest="fixed_cost",
        action="store_false",
        help="do not time `copyjob run` on a one-row table (its wall is then the whole command)",
    )
    parser.add_argument(
        "--no-goals", dest="goals", action="store_false", help="skip the goal measurements"
    )
    parser.add_argument(
        "--goals-only",
        action="store_true",
        help="only the memory, incremental and parallel goals (no comparison tables)",
    )
    parser.add_argument(
        "--delta",
        action="store_true",
        help="also PostgreSQL -> Delta: full against -> Parquet, a merge of 20,000 changed rows "
        "against the full copy and the same merge into PostgreSQL, peak RSS at two sizes",
    )
    parser.add_argument("--delta-only", action="store_true", help="only the Delta figures")
    parser.add_argument(
        "--delta-changed",
        choices=["spread", "newest"],
        default="spread",
        help="the merge's changed rows: every Nth row (each data file holds some), or the newest",
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the data set")
    parser.add_argument("--prefix", default="cjbench", help="name prefix of the databases made")
    parser.add_argument("--workdir", default=str(BENCH_DIR / ".work"), help="files made")
    parser.add_argument("--output", default=str(BENCH_DIR / "results" / "latest.md"))
    parser.add_argument("--drop-after", action="store_true", help="drop the databases at the end")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run of a way")
    parser.add_argument("--note", default="", help="a line added to the results (machine state)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
