"""The package's folders are its layers (DESIGN.md): imports point down, the engine, the stores
and the config never load Dagster, and modules stay small enough to read."""

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PACKAGE = PROJECT / "copyjob_dagster"
MAX_LINES = 400
# Modules allowed past MAX_LINES, each with its reason.
LONG_MODULES = {
    "cli/wizard.py": "the steps of `copyjob new` as one conversation, in the order they are asked",
}


def test_imports_point_down() -> None:
    """`lint-imports` checks the contracts of pyproject.toml ([tool.importlinter])."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([lint], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_engine_stores_and_config_load_no_dagster() -> None:
    """A fresh interpreter: static contracts miss an `importlib` or a re-export's import."""
    probe = (
        "import sys\n"
        "import copyjob_dagster.config, copyjob_dagster.stores, copyjob_dagster.engine\n"
        "from copyjob_dagster.engine import copy_table, load_jobs, plan_table\n"
        "loaded = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster'))\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "", f"Dagster modules loaded: {done.stdout.strip()}"


def test_modules_stay_under_400_lines() -> None:
    lengths = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    too_long = {
        name: count
        for name, count in lengths.items()
        if count > MAX_LINES and name not in LONG_MODULES
    }
    assert not too_long, f"split these along a seam, or name the reason in LONG_MODULES: {too_long}"
    stale = [name for name in LONG_MODULES if lengths.get(name, 0) <= MAX_LINES]
    assert not stale, f"no longer long, take them off LONG_MODULES: {stale}"
