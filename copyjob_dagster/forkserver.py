"""What the forkserver of a run's step processes imports (`concurrency.PRELOAD`): Dagster,
copyjob and the drivers, and the project's Definitions built from the job files as they are
when the run starts. Each step is a fork of it: it reads the job files again (`defs`), and uses
these Definitions if the files still say the same, instead of importing everything and
building every table's asset anew.
"""

import contextlib

from copyjob_dagster import definitions

# Job files that do not load: the step, which loads them itself, reports what is wrong.
with contextlib.suppress(Exception):
    definitions.defs().get_repository_def()
