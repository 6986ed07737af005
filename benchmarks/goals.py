"""The issue's goals, each measured as a ratio in the same run, and whether it is met.

- PostgreSQL -> PostgreSQL within 1.15x of the raw COPY pipe (engine direct, and `copyjob run`
  with its fixed cost removed); PostgreSQL -> MariaDB within 1.15x of COPY text | LOAD DATA;
  the Parquet pairings within 1.5x of DuckDB; at least 5x faster than Sling and dlt.
- Peak RSS of copyjob's copy flat as the table grows tenfold (ratio <= 1.2) and under 300 MB.
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
from ways import COPYJOB_RUN, PAIRINGS, environment, job_name

ENGINE = "copyjob engine (copy_table)"
SPEED_LIMITS = {"pg-pg": 1.15, "pg-mariadb": 1.15, "pg-parquet": 1.5, "sqlite-parquet": 1.5}
PEERS_TO_BEAT = ("Sling", "dlt")


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[met]


def speed_goals(results: list[PairingResult]) -> list[str]:
    lines = []
    for result in results:
        reference = result.reference_seconds
        limit = SPEED_LIMITS[result.pairing]
        for way in (ENGINE, COPYJOB_RUN):
            row = result.row(way)
            if row is None or reference is None or row.seconds is None:
                lines.append(
                    f"- {result.title}: {way} within {limit}× of the reference: not measured"
                )
                continue
            ratio = row.seconds / reference
            lines.append(
                f"- {result.title}: {way} within {limit}× of the reference: "
                f"{ratio:.2f}× → {_verdict(ratio <= limit)}"
            )
        engine = result.row(ENGINE)
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


def _repeat(argv: list[str], env: dict[str, str], repeat: int, timeout: float) -> Measured:
    measured = Measured()
    for _ in range(repeat):
        measured.samples.append(run_retried(argv, env, timeout))
    return measured


def _engine_runs(
    settings: Settings, pairing: str, variant: str, repeat: int, timeout: float
) -> Measured:
    import dataset

    measured = Measured()
    for _ in range(repeat):
        dataset.reset_destinations(settings, pairing)
        argv = [
            sys.executable,
            str(BENCH_DIR / "child.py"),
            "copiers.copy_engine:copy",
            settings.to_json(),
            job_name(pairing, variant),
        ]
        measured.samples.append(
            run_retried(argv, environment(settings), timeout, reports_time=True)
        )
    return measured


def memory_goal(
    settings: Settings,
    pairings: list[str],
    known: dict[str, Measured],
    repeat: int,
    timeout: float,
) -> list[str]:
    """copyjob's engine copying a tenth of the table, against the whole table (the run in the
    pairing's table when there was one)."""
    lines = []
    for pairing in pairings:
        small = _engine_runs(settings, pairing, "small", repeat, timeout)
        large = known.get(pairing) or _engine_runs(settings, pairing, "", repeat, timeout)
        ratio = large.peak_rss / small.peak_rss
        met = ratio <= 1.2 and large.peak_rss < 300 * MB
        lines.append(
            f"- {PAIRINGS[pairing]}: peak RSS of copy_table {small.peak_rss / MB:.0f} MB at "
            f"{settings.small_rows:,} rows, {large.peak_rss / MB:.0f} MB at "
            f"{settings.rows:,} rows: ratio {ratio:.2f} (≤ 1.2, < 300 MB) → {_verdict(met)}"
        )
    return lines


def incremental_goal(settings: Settings, repeat: int, timeout: float) -> list[str]:
    env = environment(settings, INCREMENTAL_JOB)
    copyjob = str(Path(sys.executable).with_name("copyjob"))
    dagster = str(Path(sys.executable).with_name("dagster"))
    run_retried([copyjob, "run", INCREMENTAL_JOB], env, timeout)  # the initial copy
    nothing_new = _repeat(
        [dagster, "asset", "materialize", "-m", "copyjob_dagster.definitions",
         "--select", f"{INCREMENTAL_JOB}/{INCREMENTAL_TABLE}"], env, repeat, timeout,
    )  # fmt: skip
    trivial = _repeat(
        [dagster, "asset", "materialize", "-f", str(BENCH_DIR / "trivial_asset.py"),
         "--select", "trivial"], env, repeat, timeout,
    )  # fmt: skip
    through_copyjob = _repeat([copyjob, "run", INCREMENTAL_JOB], env, repeat, timeout)
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
    parallel, sequential = Measured(), Measured()
    for _ in range(repeat):
        parallel.samples.append(run_retried([*helper, "2"], env, timeout))
        sequential.samples.append(run_retried([*helper, "1"], env, timeout))
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
) -> list[str]:
    lines = ["## Goals, as measured", ""]
    lines += speed_goals(results)
    known = {
        r.pairing: row.measured
        for r in results
        if (row := r.row(ENGINE)) is not None and row.measured and row.measured.samples
    }
    steps = (
        lambda: memory_goal(settings, pairings, known, repeat, timeout),
        lambda: incremental_goal(settings, repeat, timeout),
        lambda: parallel_goal(settings, repeat, timeout),
    )
    for step in steps:
        print("measuring a goal ...", flush=True)
        try:
            lines += step()
        except WayFailed as exc:
            lines.append(f"- failed: {str(exc).splitlines()[-1][:200]}")
    return lines
