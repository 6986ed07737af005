"""How step processes start: the multiprocess executor's `spawn` (each step imports Dagster and
copyjob anew) against `forkserver` with copyjob preloaded (what copyjob's executors use).

In one run, on the data set of benchmarks/run.py (built if missing), rounds alternating the two:

- the parallel goal's job (8 tables of rows/8 rows, PostgreSQL → PostgreSQL) with 2 steps at
  once and one at a time, each start method: wall time, the ratio, and each step's start-up
  (from Dagster's `STEP_WORKER_STARTING` to `STEP_START` in the event log: the time a table
  holds its executor and pool slot before it copies);
- the incremental goal's no-op run (`dagster asset materialize` of a copy that finds nothing
  new) against a trivial asset through the same command. Its executor is the Definitions'
  one, which has no start method to choose in run config: `--spawn-venv` names a virtualenv
  where copyjob's code is the one before forkserver (e.g. main's), run on the same files.

    .venv/bin/python benchmarks/start_method.py --rounds 2 --spawn-venv /work/main/.venv
"""

import argparse
import statistics
import sys
from pathlib import Path

import dagster as dg
from dataset import prepare
from jobs import INCREMENTAL_JOB, INCREMENTAL_TABLE, PARALLEL_JOB, fresh_dagster_home, write_jobs
from measure import run_retried
from settings import BENCH_DIR, Settings
from ways import environment

BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--spawn-venv", type=Path, help="copyjob with spawn (no-op comparison)")
    parser.add_argument("--workdir", default=str(BENCH_DIR / ".work"))
    args = parser.parse_args()
    settings = Settings.from_environment(args.rows, "cjbench", Path(args.workdir))
    prepare(settings)
    write_jobs(settings)
    fresh_dagster_home(settings)
    print(f"load average before: {_loadavg()}", flush=True)

    walls: dict[str, list[float]] = {}
    startups: dict[str, list[float]] = {}
    env = environment(settings, PARALLEL_JOB)
    for _ in range(args.rounds):
        for start in ("spawn", "forkserver"):
            for at_once in (2, 1):
                argv = [sys.executable, str(BENCH_DIR / "dagster_job.py"), PARALLEL_JOB]
                sample = run_retried([*argv, str(at_once), start], env, 900)
                walls.setdefault(f"{start} {at_once}", []).append(sample.process_seconds)
                startups.setdefault(start, []).extend(_step_startups(settings))
                print(f"{start}, {at_once} at once: {sample.process_seconds:.2f} s", flush=True)
    print(f"load average after the parallel job: {_loadavg()}")
    for start in ("spawn", "forkserver"):
        two, one = (statistics.median(walls[f"{start} {n}"]) for n in (2, 1))
        print(
            f"- {start}: 8 tables, 2 at once {two:.2f} s, one at a time {one:.2f} s: "
            f"{one / two:.2f}×; step start-up median {statistics.median(startups[start]):.2f} s, "
            f"max {max(startups[start]):.2f} s"
        )
    _no_op(settings, args.rounds, args.spawn_venv)


def _no_op(settings: Settings, rounds: int, spawn_venv: Path | None) -> None:
    env = environment(settings, INCREMENTAL_JOB)
    run_retried([str(BIN / "copyjob"), "run", INCREMENTAL_JOB], env, 900)  # the initial copy
    select = ["--select", f"{INCREMENTAL_JOB}/{INCREMENTAL_TABLE}"]
    ways = {
        "trivial asset": [str(BIN / "dagster"), "asset", "materialize", "-f",
                          str(BENCH_DIR / "trivial_asset.py"), "--select", "trivial"],
        "no-op copy (forkserver)": [str(BIN / "dagster"), "asset", "materialize", "-m",
                                    "copyjob_dagster.definitions", *select],
    }  # fmt: skip
    if spawn_venv:
        ways["no-op copy (spawn)"] = [str(spawn_venv / "bin" / "dagster"), "asset", "materialize",
                                      "-m", "copyjob_dagster.definitions", *select]  # fmt: skip
    seconds: dict[str, list[float]] = {}
    for _ in range(rounds * 2):
        for way, argv in ways.items():
            seconds.setdefault(way, []).append(run_retried(argv, env, 900).process_seconds)
    trivial = statistics.median(seconds["trivial asset"])
    for way, values in seconds.items():
        median = statistics.median(values)
        print(f"- {way}: {median:.2f} s, {median / trivial:.2f}× the trivial asset")
    print(f"load average after the no-op runs: {_loadavg()}")


def _step_startups(settings: Settings) -> list[float]:
    """Seconds from each step's `STEP_WORKER_STARTING` to its `STEP_START`, latest run."""
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        run = instance.get_runs(limit=1)[0]
        records = instance.get_records_for_run(run.run_id).records
    starting: dict[str, float] = {}
    found = []
    for record in records:
        entry = record.event_log_entry
        kind = entry.dagster_event_type
        if kind == dg.DagsterEventType.STEP_WORKER_STARTING:
            starting[entry.step_key] = entry.timestamp
        elif kind == dg.DagsterEventType.STEP_START and entry.step_key in starting:
            found.append(entry.timestamp - starting[entry.step_key])
    return found


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
