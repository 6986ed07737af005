"""Where the project's files and state are: the project folder, the job files, DAGSTER_HOME.

Read at call time, never at import time, so that tests and tools can point them elsewhere.
"""

import os
from pathlib import Path

from copyjob_dagster.errors import ConfigError

JOBS_DIR_VARIABLE = "COPYJOB_JOBS_DIR"
PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def project_dir() -> Path:
    """The nearest folder, from the working directory up, that holds workspace.yaml.

    Falls back to the folder this package was installed from (an editable install), so that
    the command works from anywhere inside or outside the checkout.
    """
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "workspace.yaml").is_file():
            return folder
    if (PACKAGE_PARENT / "workspace.yaml").is_file():
        return PACKAGE_PARENT
    raise ConfigError(
        "cannot find the copyjob project (a folder with workspace.yaml): run the command "
        "inside the project, or set COPYJOB_JOBS_DIR and DAGSTER_HOME"
    )


def jobs_dir() -> Path:
    """`$COPYJOB_JOBS_DIR`, else the project's `copy_jobs/` folder."""
    configured = os.environ.get(JOBS_DIR_VARIABLE)
    return Path(configured).resolve() if configured else project_dir() / "copy_jobs"


def ensure_dagster_home() -> Path:
    """Honour DAGSTER_HOME; else use `<project>/.dagster`, configured by the project's dagster.yaml.

    The state folder is git-ignored; its dagster.yaml is a link to the repository's, so the
    configuration lives in one place under version control.
    """
    configured = os.environ.get("DAGSTER_HOME")
    if configured:
        return Path(configured)
    project = project_dir()
    home = project / ".dagster"
    home.mkdir(exist_ok=True)
    link = home / "dagster.yaml"
    if not link.exists():
        link.symlink_to(Path("..") / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home
