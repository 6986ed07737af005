"""Upkeep of a Delta destination table: compaction of its small files and vacuum of the files
no version within the retention needs (see docs/delta.md, "Upkeep")."""

from pydantic import Field, field_validator

from copyjob_dagster.config.base import StrictModel

# Delta's own default for `delta.deletedFileRetentionDuration`: a reader may time travel this
# far back, and a reader or writer still busy with a version this old keeps its files.
DEFAULT_RETENTION_HOURS = 168


class MaintenanceConfig(StrictModel):
    """After every `every` commits to the table, compact its small files, then vacuum."""

    every: int = Field(
        ge=1,
        strict=True,
        description="commits to the table (copies and others) between two upkeeps",
    )
    retention_hours: int | None = Field(
        None,
        strict=True,
        description="a file removed from the table is deleted once it has been out of the table "
        "this long, never sooner; default: the table's delta.deletedFileRetentionDuration, else "
        "Delta's 168 hours (7 days)",
    )

    @field_validator("retention_hours")
    @classmethod
    def _no_shorter_than_delta(cls, hours: int | None) -> int | None:
        if hours is not None and hours < DEFAULT_RETENTION_HOURS:
            raise ValueError(
                f"{hours} hours is less than Delta's default retention of "
                f"{DEFAULT_RETENTION_HOURS} hours (7 days): versions younger than that could no "
                f"longer be read, and a reader still reading one would fail. To keep less, set "
                f"the table's own delta.deletedFileRetentionDuration (every Delta reader and "
                f"writer honours it) and leave retention_hours out"
            )
        return hours
