"""One `copyjob run` job, two checkouts of the code in turns (ABBA): the wall of each process
to its exit and its tree's CPU (`many_tables.timed`), with the load average.

For a change to `copyjob run` that is smaller than the spread of run.py's paired ratios on a
shared machine: the job runs alone, without the pipe between its runs. Each checkout gets a
Dagster instance of its own, made by a first run that is not measured. The job must exist
already (run.py makes `bench_pg_mariadb` in its workdir's jobs folder).

    .venv/bin/python benchmarks/run_ab.py /tmp/after /tmp/before \\
        --jobs benchmarks/.work/jobs/bench_pg_mariadb --job bench_pg_mariadb --rounds 4
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from many_tables import timed  # noqa: E402 - benchmarks/ is not a package

COPYJOB = Path(sys.executable).with_name("copyjob")


def run_once(code: str, home: Path, jobs: str, job: str) -> tuple[float, float, float]:
    """Wall and CPU seconds of one `copyjob run`, and the 1-minute load before it."""
    env = {**os.environ, "PYTHONPATH": code, "DAGSTER_HOME": str(home), "COPYJOB_JOBS_DIR": jobs}
    load = os.getloadavg()[0]
    wall, cpu = timed([str(COPYJOB), "run", job], env)
    return wall, cpu, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "a", type=os.path.abspath, help="checkout of the code measured (PYTHONPATH)"
    )
    parser.add_argument("b", type=os.path.abspath, help="checkout it is compared with")
    parser.add_argument(
        "--jobs", required=True, type=os.path.abspath, help="the jobs folder (COPYJOB_JOBS_DIR)"
    )
    parser.add_argument("--job", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    times: dict[str, list[tuple[float, float, float]]] = {args.a: [], args.b: []}
    with tempfile.TemporaryDirectory() as folder:
        homes = {code: Path(folder) / str(i) for i, code in enumerate(times)}
        for code, home in homes.items():
            home.mkdir()
            run_once(code, home, args.jobs, args.job)  # not measured: creates the instance
        for i in range(args.rounds):
            for code in (args.a, args.b) if i % 2 == 0 else (args.b, args.a):
                wall, cpu, load = run_once(code, homes[code], args.jobs, args.job)
                times[code].append((wall, cpu, load))
                print(f"{code}: wall {wall:.2f} s, CPU {cpu:.2f} s, load {load:.2f}", flush=True)
    for code, found in times.items():
        walls, cpus = [t[0] for t in found], [t[1] for t in found]
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        print(f"{code}: median wall {wall:.2f} s, CPU {cpu:.2f} s")
    pairs = [a[0] - b[0] for a, b in zip(times[args.a], times[args.b], strict=True)]
    print(
        f"a - b per round: {[round(d, 2) for d in pairs]}, median {statistics.median(pairs):.2f} s"
    )


if __name__ == "__main__":
    main()
