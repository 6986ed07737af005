"""The Dagster layer: each table an asset (naming, specs, the asset body), its checks,
schedules and sensors, materialization metadata and the watermark of record, history read from
the instance, and the concurrency settings of runs."""

from copyjob_dagster.defs.assets import build_copy_assets, build_source_specs, latest_watermark
from copyjob_dagster.defs.automation import build_new_data_sensor, build_schedule
from copyjob_dagster.defs.concurrency import apply_pool_limits, default_executor, job_executor
from copyjob_dagster.defs.history import History, Totals, read_history
from copyjob_dagster.defs.listing import JobEntry, list_jobs
from copyjob_dagster.defs.liveness import mark_interrupted_runs, process_tags
from copyjob_dagster.defs.metadata import (
    ROWS_PER_SECOND,
    ROWS_READ,
    ROWS_WRITTEN,
    SECONDS,
    TABLE_NAME,
    WATERMARK,
    WATERMARK_BEFORE,
)
from copyjob_dagster.defs.monitoring import (
    build_summary_sensor,
    monitoring_specs,
    record_run_summary,
)
from copyjob_dagster.defs.operations import StateOperation
from copyjob_dagster.defs.skipped import skipped_job_specs

__all__ = [
    "ROWS_PER_SECOND",
    "ROWS_READ",
    "ROWS_WRITTEN",
    "SECONDS",
    "TABLE_NAME",
    "WATERMARK",
    "WATERMARK_BEFORE",
    "History",
    "JobEntry",
    "StateOperation",
    "Totals",
    "apply_pool_limits",
    "build_copy_assets",
    "build_new_data_sensor",
    "build_schedule",
    "build_source_specs",
    "build_summary_sensor",
    "default_executor",
    "job_executor",
    "latest_watermark",
    "list_jobs",
    "mark_interrupted_runs",
    "monitoring_specs",
    "process_tags",
    "read_history",
    "record_run_summary",
    "skipped_job_specs",
]
