"""Copy the same `orders` table every way we know, side by side, and print one table per
pairing: median wall time, rows/s, the ratio to the pairing's reference, peak RSS.

    .venv/bin/python benchmarks/run.py                  # 2,000,000 rows, 3 runs of each way
    .venv/bin/python benchmarks/run.py --rows 200000 --repeat 1 --no-pandas

Run it with the project's virtualenv: copyjob's own ways run there; the peer tools (Sling,
dlt, DuckDB, connectorx, ADBC, asyncpg, pandas) run in `benchmarks/.peers`, made on first use
from `benchmarks/requirements-peers.txt`. See benchmarks/README.md.
"""

import argparse
import statistics
import sys
from pathlib import Path

import dataset
import delta
import goals
import jobs
import peers
from measure import Measured, Sample, WayFailed, run_retried
from report import (
    MB,
    PairingResult,
    Row,
    commit_measured,
    load_note,
    machine,
    pairing_table,
    sample_load,
)
from settings import BENCH_DIR, Settings
from ways import COPYJOB_RUN, ENGINE, PAIRINGS, Way, environment, job_name, ways_for


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_environment(args.rows, args.prefix, Path(args.workdir))
    commit_measured()  # now, before the code can change under a long run
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
            goal_lines = goals.measure(
                settings,
                results,
                pairings,
                args.repeat,
                args.timeout,
                args.memory_repeat,
                tuple(args.goal or ()),
            )
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
    """Each way of one pairing, round after round. The reference and copyjob's ways run every
    round, in turns (ABBA: reference first in even rounds, last in odd ones), so that each
    round gives one paired ratio per copyjob way; the peer tools run in the first
    `--peer-repeat` rounds. Every way loads into the table definition copyjob creates, and
    every destination is counted and checksummed against the source."""
    chosen = [w for w in ways_for(pairing) if _wanted(w, pairing, args)]
    expected = dataset.source_content(settings)
    create = _copyjob_ddl(settings, pairing, args.timeout)
    core = [w for w in chosen if w.reference or w.group == "project"]
    others = [w for w in chosen if w not in core]
    measured = {way.name: Measured() for way in chosen}
    rounds: dict[str, dict[int, Sample]] = {way.name: {} for way in chosen}
    errors: dict[str, list[str]] = {way.name: [] for way in chosen}
    for repeat in range(args.repeat):
        order = core if repeat % 2 == 0 else core[::-1]
        extra = [
            w for w in others
            if repeat < (args.pandas_repeat if w.group == "pandas" else args.peer_repeat)
        ]  # fmt: skip
        for way in [*order, *extra]:
            if errors[way.name] and not measured[way.name].samples:
                continue  # never worked (run_retried tried it three times)
            print(f"[{pairing}] round {repeat + 1}/{args.repeat}: {way.name} ...", flush=True)
            try:
                sample = _run_once(settings, pairing, way, job_name(pairing, way.variant),
                                   args.timeout, create)  # fmt: skip
            except WayFailed as exc:
                errors[way.name].append(str(exc).splitlines()[-1][:200])
                continue
            sample.rows, sample.checksum = dataset.content(
                settings, pairing, way.count_in(settings) if way.count_in else None
            )
            measured[way.name].samples.append(sample)
            rounds[way.name][repeat] = sample
            growth = f", copy's own growth {sample.growth / MB:.0f} MB" if sample.growth else ""
            same = "same content" if sample.checksum == expected[1] else "CONTENT DIFFERS"
            print(
                f"    {sample.copy_seconds:.2f} s (whole {sample.process_seconds:.2f} s), "
                f"{sample.rows:,} rows, {same}, tree peak {sample.peak_rss / MB:.0f} MB{growth}",
                flush=True,
            )
    result = PairingResult(pairing, PAIRINGS[pairing], expected_checksum=expected[1])
    result.ddl = dataset.destination_ddl(settings, pairing) if create == "copyjob" else ""
    reference = next((w for w in chosen if w.reference), None)
    for way in chosen:
        failures = errors[way.name]
        worked = bool(measured[way.name].samples)
        if not worked and not failures:
            continue  # not run (--peer-repeat 0)
        row = Row(way.name, measured[way.name], settings.rows, way.reference)
        row.command = way.python is None
        row.whole_only = way.name == COPYJOB_RUN
        row.error = "" if worked else (failures[0] if failures else "")
        if worked and failures:
            row.note = f"{len(failures)} round(s) failed (median of the others): {failures[0]}"
        if worked and reference is not None and way in core and not way.reference:
            row.paired = _paired(rounds[way.name], rounds[reference.name])
        result.rows.append(row)
    return result


def _paired(way: dict[int, Sample], reference: dict[int, Sample]) -> tuple[float, float, int]:
    """Median over the rounds both ran of (copy ratio, whole-command ratio), and their count."""
    both = sorted(set(way) & set(reference))
    if not both:
        return (0.0, 0.0, 0)
    copy = statistics.median(way[r].copy_seconds / reference[r].copy_seconds for r in both)
    whole = statistics.median(way[r].process_seconds / reference[r].process_seconds for r in both)
    return (copy, whole, len(both))


def _copyjob_ddl(settings: Settings, pairing: str, timeout: float) -> str:
    """Let copyjob's engine create the destination table (a run not measured), and keep its
    definition for every way's runs: the reference loads into the table copyjob creates."""
    if pairing not in ("pg-pg", "pg-mariadb", "pg-sqlite"):
        return "none"  # files: no table definition to share
    engine = next(w for w in ways_for(pairing) if w.name == ENGINE)
    print(f"[{pairing}] copyjob creates the destination table (not measured) ...", flush=True)
    run_retried(
        engine.argv(settings, job_name(pairing)),
        environment(settings, job_name(pairing)),
        timeout,
        reports_time=True,
        before=lambda: dataset.reset_destinations(settings, pairing, create="none"),
    )
    return "copyjob" if dataset.keep_ddl(settings, pairing) else "none"


def _run_once(
    settings: Settings, pairing: str, way: Way, param: str, timeout: float, create: str
) -> Sample:
    """One run into an empty destination (retried: see `run_retried`)."""
    sample_load()
    return run_retried(
        way.argv(settings, param),
        environment(settings, param),
        timeout,
        reports_time=way.python is not None,
        before=lambda: dataset.reset_destinations(settings, pairing, create),
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
        f"The reference and copyjob's ways ran {args.repeat} rounds in turns (ABBA), the peer "
        f"tools {args.peer_repeat} (pandas {args.pandas_repeat}); *runs* says how many worked "
        "(*paired*: its ratios are the median of its ratio to the reference run of the same "
        "round; otherwise the ratio of the medians). *copy s* is the copy as the way reports it "
        "(Python ways: from after their imports, connections included; commands: the whole "
        "command; `copyjob run`: not timed apart). *whole s* is the whole command, start-up and "
        "imports included: `copyjob run` is compared with the reference this way only. "
        "*content* compares each destination's checksum (content.py: every row, every column, "
        "in any order) with the source's. *copy's own growth* (Python ways) is the copy's "
        "high-water mark above the process's resident set after its imports, the largest of "
        "the runs; *tree peak RSS* is of the whole process tree, imports included. Load: "
        + load_note(),
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
    parser.add_argument(
        "--repeat", type=int, default=5, help="rounds of the reference and copyjob's ways (median)"
    )
    parser.add_argument(
        "--peer-repeat", type=int, default=1, help="rounds of the peer tools (slow; median)"
    )
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
        help="pairings on which to time `copyjob run`",
    )
    parser.add_argument(
        "--memory-repeat", type=int, default=1, help="runs of each size for the memory goal"
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
    parser.add_argument(
        "--goal",
        action="append",
        choices=("memory", "incremental", "parallel"),
        help="measure only this goal (repeatable; the speed goals come from the tables)",
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
