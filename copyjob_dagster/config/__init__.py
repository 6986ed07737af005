"""The config layer: a copy job's pydantic models, its endpoints (URLs, masking), and reading
job files with errors that name the file, job, table and field. Imports nothing above it."""

from copyjob_dagster.config.added_columns import AuditColumns
from copyjob_dagster.config.automation import ScheduleConfig, SensorConfig, Status
from copyjob_dagster.config.base import FieldProblem, key_part, unique_key_part
from copyjob_dagster.config.endpoints import (
    DEFAULT_CONNECT_TIMEOUT,
    SourceConfig,
    StoreConfig,
    mask_url,
)
from copyjob_dagster.config.jobs_folder import JobsFolder, SkippedJob, read_jobs_folder
from copyjob_dagster.config.loading import (
    JobCheck,
    check_across_jobs,
    job_files,
    job_from_tree,
    read_job,
    read_jobs,
)
from copyjob_dagster.config.maintenance import DEFAULT_RETENTION_HOURS, MaintenanceConfig
from copyjob_dagster.config.models import (
    JOB_FILE_SUFFIXES,
    JOB_NAME_PATTERN,
    RESERVED_JOB_NAMES,
    CopyJob,
    TableConfig,
)
from copyjob_dagster.config.pools import POOL_PREFIX, pool_limits, source_pool

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_RETENTION_HOURS",
    "JOB_FILE_SUFFIXES",
    "JOB_NAME_PATTERN",
    "POOL_PREFIX",
    "RESERVED_JOB_NAMES",
    "AuditColumns",
    "CopyJob",
    "FieldProblem",
    "JobCheck",
    "JobsFolder",
    "MaintenanceConfig",
    "ScheduleConfig",
    "SensorConfig",
    "SkippedJob",
    "SourceConfig",
    "Status",
    "StoreConfig",
    "TableConfig",
    "check_across_jobs",
    "job_files",
    "key_part",
    "job_from_tree",
    "read_job",
    "read_jobs",
    "read_jobs_folder",
    "mask_url",
    "pool_limits",
    "source_pool",
    "unique_key_part",
]
