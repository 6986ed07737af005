"""Importing copyjob makes jemalloc Arrow's memory pool, unless the user chose one."""

import os
import subprocess
import sys

SCRIPT = "import copyjob_dagster, pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def _pool(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**environment, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_copies_allocate_from_jemalloc() -> None:
    assert _pool() == "jemalloc"


def test_a_pool_the_user_chose_stays() -> None:
    assert _pool(ARROW_DEFAULT_MEMORY_POOL="system") == "system"
