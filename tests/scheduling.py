"""How pytest-xdist hands the suite to its workers: some modules whole to one worker, the
slowest work first.

xdist's own `xdist_group` marker does nothing with pytest 9.2 and xdist 3.8 (xdist renames the
group's tests through `item._nodeid`, which pytest 9 no longer reads), so every module whose
fixtures are costly was set up again on each worker: the security suite's private PostgreSQL
server and the canary's copies twice. The scheduler below groups by path instead; the
controller sees only test ids, so a path is what it can group by.
"""

from collections import OrderedDict

from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

# Modules (or folders) whose module- or session-scoped fixtures are costly: each runs whole on
# one worker, so they are made once. (List a module here: an `xdist_group` marker is ignored.)
ONE_WORKER = (
    "tests/security/",
    "tests/test_cdc.py",  # a private PostgreSQL with wal_level=logical, a moto server
    "tests/test_cdc_sensor.py",  # the same
    "tests/test_binlog_cdc.py",  # a private MariaDB with the binlog on
    "tests/faults/test_binlog_faults.py",  # the same
    "tests/test_celery.py",
    "tests/test_component.py",
    "tests/test_cli_validate.py",
    "tests/test_cli_watermark.py",
    "tests/test_history.py",
    "tests/test_wizard",  # test_wizard.py and test_wizard_login.py, one group before too
    "tests/stores/test_delta_s3.py",  # its moto server
    "tests/stores/test_parquet_s3.py",  # its moto server
    # Its pollers of INNODB_TRX (every 20 ms) keep the shared server's cache stale for another
    # test of the module run beside them on the other worker.
    "tests/stores/test_innodb_trx.py",
)

# The slowest work, started first so that no worker is left alone with a long test at the end
# (measured with --durations; the rest keeps its collection order).
SLOWEST_FIRST = (
    "tests/security/",
    "tests/test_wizard",
    "tests/faults/",
    "tests/test_end_to_end.py",
    "tests/test_benchmark_smoke.py",
    "tests/test_webserver.py",
    "tests/test_ui_reexecution.py",
    "tests/test_concurrency.py",
    "tests/test_history.py",
    "tests/test_state_operations.py",
    "tests/test_progress.py",
    "tests/test_cli_validate.py",
)


def _rank(scope: str) -> int:
    return next(
        (i for i, prefix in enumerate(SLOWEST_FIRST) if scope.startswith(prefix)),
        len(SLOWEST_FIRST),
    )


class GroupedSlowestFirst(LoadScopeScheduling):
    """Each test is a unit of work of its own, except the ONE_WORKER modules (one unit each);
    units are handed out slowest first."""

    _sorted = False

    def _split_scope(self, nodeid: str) -> str:
        return next((prefix for prefix in ONE_WORKER if nodeid.startswith(prefix)), nodeid)

    def _assign_work_unit(self, node: WorkerController) -> None:
        if not self._sorted:
            ordered = sorted(self.workqueue.items(), key=lambda unit: _rank(unit[0]))
            self.workqueue = OrderedDict(ordered)
            self._sorted = True
        super()._assign_work_unit(node)
