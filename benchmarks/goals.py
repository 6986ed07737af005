"""The issue's goals, each measured as a ratio in the same run, and whether it is met.

- copyjob's engine: PostgreSQL -> PostgreSQL within 1.15x of the raw COPY pipe, PostgreSQL ->
  MariaDB within 1.15x of COPY text | LOAD DATA, PostgreSQL -> Parquet and -> SQLite within
  1.0x of DuckDB (issue 23), SQLite -> Parquet within 1.5x
  (medians of paired ratios); at least 5x faster than Sling and dlt. `copyjob run` is shown
  as the whole command against the whole reference command, without a verdict.
- The copy's own memory (above its post-import baseline) flat over three sizes: at the whole
  table at most 1.2x its growth at a tenth.
- An incremental run that finds nothing new at most 1.5x a trivial asset's materialization
  through the same command (`dagster asset materialize`).
- A job of 8 tables copied in parallel at least 1.6x faster than one after another.
"""

import sys
from pathlib import Path

from jobs import INCREMENTAL_JOB, INCREMENTAL_TABLE, PARALLEL_JOB
from measure import Measured, WayFailed, run_retried
from report import MB, PairingResult
from settings import BENCH_DIR, Settings
from ways import COPYJOB_RUN, ENGINE, PAIRINGS, environment, job_name

SPEED_LIMITS = {
    "pg-pg": 1.15,
    "pg-mariadb": 1.15,
    "pg-parquet": 1.0,  # issue 23: DuckDB's speed, since PostgreSQL is read natively
    "sqlite-parquet": 1.5,
    "pg-sqlite": 1.0,
}
PEERS_TO_BEAT = ("Sling", "dlt")


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[met]


def speed_goals(results: list[PairingResult]) -> list[str]:
    """The engine's copy against the reference's (median of the paired rounds' ratios), with
    a verdict; `copyjob run` as the whole command against the whole reference command, shown
    without one (the speed goals are the copy's; what the command adds is Dagster's)."""
    lines = []
    for result in results:
        limit = SPEED_LIMITS[result.pairing]
        engine = result.row(ENGINE)
        ratio = result.copy_ratio(engine) if engine is not None else None
        if ratio is None:
            lines.append(
                f"- {result.title}: {ENGINE} within {limit}× of the reference: not measured"
            )
        else:
            lines.append(
                f"- {result.title}: {ENGINE} within {limit}× of the reference: {ratio:.2f}× "
                f"(median of {engine.paired[2] if engine.paired else 1} paired rounds) → "
                f"{_verdict(ratio <= limit)}"
            )
        run = result.row(COPYJOB_RUN)
        whole = result.whole_ratio(run) if run is not None else None
        reference = result.reference
        if whole is not None and reference is not None and run is not None:
            lines.append(
                f"- {result.title}: {COPYJOB_RUN}, the whole command against the whole reference "
                f"command: {run.process_seconds:.2f} s against {reference.process_seconds:.2f} s "
                f"(medians), {whole:.2f}× (median of the paired rounds' ratios; no goal: "
                "reported)"
            )
        for peer in PEERS_TO_BEAT:
            other = next((r for r in result.rows if r.way.startswith(peer) and not r.error), None)
            if engine is None or other is None or not engine.seconds or other.seconds is None:
                lines.append(f"- {result.title}: 5× faster than {peer}: not measured")
                continue
            factor = other.seconds / engine.seconds
            lines.append(
                f"- {result.title}: 5× faster than {peer}: {factor:.1f}× → {_verdict(factor >= 5)}"
            )
    return lines


def _alternate(
    commands: list[tuple[list[str], dict[str, str]]], repeat: int, timeout: float
) -> list[Measured]:
    """Each command `repeat` times, in turns (ABBA), so that drift spreads over all of them."""
    measured = [Measured() for _ in commands]
    for round_ in range(repeat):
        order = list(range(len(commands)))
        for index in order if round_ % 2 == 0 else order[::-1]:
            argv, env = commands[index]
            measured[index].samples.append(run_retried(argv, env, timeout))
    return measured


def _engine_runs(
    settings: Settings, pairing: str, variant: str, repeat: int, timeout: float
) -> Measured:
    import dataset

    measured = Measured()
    for _ in range(repeat):
        argv = [
            sys.executable,
            str(BENCH_DIR / "child.py"),
            "copiers.copy_engine:copy",
            settings.to_json(),
            job_name(pairing, variant),
        ]
        measured.samples.append(
            run_retried(
                argv,
                environment(settings),
                timeout,
                reports_time=True,
                before=lambda: dataset.reset_destinations(settings, pairing, "none"),
            )
        )
    return measured


MEMORY_SIZES = (("tiny", "hundredth"), ("small", "tenth"), ("", "whole table"))
GROWTH_LIMIT = 1.2


def memory_goal(settings: Settings, pairings: list[str], repeat: int, timeout: float) -> list[str]:
    """copy_table's own memory (its high-water mark during the copy above the process's
    resident set after its imports: child.py) at three sizes: a hundredth, a tenth and the
    whole table. Flat when the growth at the whole table is at most GROWTH_LIMIT times the
    growth at a tenth (streamed batches: the growth should not follow the rows)."""
    lines = []
    sizes = {"tiny": settings.tiny_rows, "small": settings.small_rows, "": settings.rows}
    for pairing in pairings:
        growth, baseline = {}, {}
        for variant, _ in MEMORY_SIZES:
            runs = _engine_runs(settings, pairing, variant, repeat, timeout)
            growth[variant] = runs.growth or 0
            baseline[variant] = runs.baseline or 0
        ratio = growth[""] / growth["small"] if growth["small"] else float("inf")
        shown = ", ".join(f"{growth[v] / MB:.0f} MB at {sizes[v]:,} rows" for v, _ in MEMORY_SIZES)
        lines.append(
            f"- {PAIRINGS[pairing]}: copy_table's own growth above its post-import baseline "
            f"(~{baseline[''] / MB:.0f} MB): {shown}; whole table against a tenth: {ratio:.2f}× "
            f"(≤ {GROWTH_LIMIT}) → {_verdict(ratio <= GROWTH_LIMIT)}"
        )
    return lines


def incremental_goal(settings: Settings, repeat: int, timeout: float) -> list[str]:
    env = environment(settings, INCREMENTAL_JOB)
    copyjob = str(Path(sys.executable).with_name("copyjob"))
    dagster = str(Path(sys.executable).with_name("dagster"))
    run_retried([copyjob, "run", INCREMENTAL_JOB], env, timeout)  # the initial copy
    nothing_new, trivial, through_copyjob = _alternate(
        [
            ([dagster, "asset", "materialize", "-m", "copyjob_dagster.definitions",
              "--select", f"{INCREMENTAL_JOB}/{INCREMENTAL_TABLE}"], env),
            ([dagster, "asset", "materialize", "-f", str(BENCH_DIR / "trivial_asset.py"),
              "--select", "trivial"], env),
            ([copyjob, "run", INCREMENTAL_JOB], env),
        ],
        repeat,
        timeout,
    )  # fmt: skip
    ratio = nothing_new.process_seconds / trivial.process_seconds
    return [
        f"- incremental run that finds nothing new ({settings.small_rows:,}-row table): "
        f"{nothing_new.process_seconds:.2f} s vs a trivial asset {trivial.process_seconds:.2f} s "
        f"through `dagster asset materialize`: {ratio:.2f}× (≤ 1.5) → {_verdict(ratio <= 1.5)}; "
        f"through `copyjob run`: {through_copyjob.process_seconds:.2f} s",
    ]


def parallel_goal(settings: Settings, repeat: int, timeout: float) -> list[str]:
    env = environment(settings, PARALLEL_JOB)
    helper = [sys.executable, str(BENCH_DIR / "dagster_job.py"), PARALLEL_JOB]
    parallel, sequential = _alternate(
        [([*helper, "2"], env), ([*helper, "1"], env)], repeat, timeout
    )
    ratio = sequential.process_seconds / parallel.process_seconds
    return [
        f"- a job of 8 tables of {settings.part_rows:,} rows (PostgreSQL → PostgreSQL): "
        f"{parallel.process_seconds:.2f} s in parallel (multiprocess executor, forkserver, 2 at "
        f"once) vs "
        f"{sequential.process_seconds:.2f} s one after another: {ratio:.2f}× (≥ 1.6) → "
        f"{_verdict(ratio >= 1.6)}",
    ]


def measure(
    settings: Settings,
    results: list[PairingResult],
    pairings: list[str],
    repeat: int,
    timeout: float,
    memory_repeat: int = 1,
    only: tuple[str, ...] = (),
) -> list[str]:
    lines = ["## Goals, as measured", ""]
    lines += speed_goals(results)
    steps = {
        "memory": lambda: memory_goal(settings, pairings, memory_repeat, timeout),
        "incremental": lambda: incremental_goal(settings, repeat, timeout),
        "parallel": lambda: parallel_goal(settings, repeat, timeout),
    }
    for name, step in steps.items():
        if only and name not in only:
            continue
        print("measuring a goal ...", flush=True)
        try:
            lines += step()
        except WayFailed as exc:
            lines.append(f"- failed: {str(exc).splitlines()[-1][:200]}")
    return lines
