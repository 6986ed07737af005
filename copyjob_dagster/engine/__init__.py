"""The engine: copying one table (planning, windows and watermarks, splitting, deletions,
SCD2 stamping, the PostgreSQL passthrough), counts, the dry run and source discovery.

It never imports Dagster: it can be called, tested and benchmarked on its own.
"""

from copyjob_dagster.engine.copying import CopyResult, copy_table, cursor_kind
from copyjob_dagster.engine.counts import destination_rows, rows_beyond, source_rows_up_to
from copyjob_dagster.engine.discovery import (
    TableSummary,
    check_destination,
    explore_source,
    incremental_candidates,
    logs_in,
)
from copyjob_dagster.engine.dryrun import TablePlan, plan_table
from copyjob_dagster.engine.jobs import load_job, load_job_tree, load_jobs, load_jobs_folder
from copyjob_dagster.engine.late_commits import watches_open_transactions
from copyjob_dagster.engine.maintenance import maintain_table
from copyjob_dagster.engine.overrides import (
    Backfill,
    incremental_kind,
    require_destination_table,
    require_incremental,
    typed_watermark,
)
from copyjob_dagster.engine.planning import plan_copy
from copyjob_dagster.engine.progress import ProgressLog
from copyjob_dagster.engine.table_stores import (
    TableStores,
    describe_sources,
    shared_engines,
    table_lock,
    table_stores,
)
from copyjob_dagster.engine.watermark import Watermark
from copyjob_dagster.engine.watermark import parse as parse_watermark
from copyjob_dagster.engine.windows import describe_window

__all__ = [
    "Backfill",
    "CopyResult",
    "ProgressLog",
    "TablePlan",
    "TableStores",
    "TableSummary",
    "Watermark",
    "check_destination",
    "copy_table",
    "cursor_kind",
    "describe_window",
    "destination_rows",
    "explore_source",
    "incremental_candidates",
    "incremental_kind",
    "load_job",
    "load_job_tree",
    "load_jobs",
    "load_jobs_folder",
    "logs_in",
    "maintain_table",
    "parse_watermark",
    "plan_copy",
    "plan_table",
    "require_destination_table",
    "require_incremental",
    "rows_beyond",
    "source_rows_up_to",
    "describe_sources",
    "shared_engines",
    "table_lock",
    "table_stores",
    "typed_watermark",
    "watches_open_transactions",
]
