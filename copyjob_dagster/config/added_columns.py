"""Columns a copy adds to the destination: audit columns, SCD2 validity, the soft-deletion mark.

Their names are the user's to choose; they must not collide with each other nor with a copied
column (checked here when the job lists its columns, and again against the source's columns
when the copy is planned).
"""

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from copyjob_dagster.config.models import TableConfig

Text = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuditColumns(_Model):
    """Columns the copy adds to every row it writes, by name; null leaves one out.

    `audit_columns: true` takes every default name.
    """

    run_id: Text | None = Field("_copyjob_run_id", description="the Dagster run that wrote it")
    loaded_at: Text | None = Field("_copyjob_loaded_at", description="when that run started")
    window_from: Text | None = Field(
        "_copyjob_window_from", description="the window's lower bound (the watermark before)"
    )
    window_to: Text | None = Field(
        "_copyjob_window_to", description="the window's upper bound (the watermark after)"
    )

    @property
    def names(self) -> list[str]:
        return [n for n in (self.run_id, self.loaded_at, self.window_from, self.window_to) if n]


class HistoryColumns(_Model):
    """The validity columns of `write: scd2` tables."""

    valid_from: Text = Field("_copyjob_valid_from", description="the version's first value")
    valid_to: Text = Field("_copyjob_valid_to", description="the next version's valid_from")
    is_current: Text = Field("_copyjob_is_current", description="true for the latest version")

    @property
    def names(self) -> list[str]:
        return [self.valid_from, self.valid_to, self.is_current]


def audit_shorthand(value: Any) -> Any:
    """`true` is every audit column with its default name."""
    return {} if value is True else value


def added_column_problem(
    table: "TableConfig", audit: AuditColumns | None, mode: str
) -> tuple[str, str] | None:
    """The field and message of the first problem with the table's added columns, if any."""
    if table.deletes != "ignore" and not table.primary_key:
        return (
            "deletes",
            f"deletes: {table.deletes} finds deleted rows by their key; name it with "
            f"primary_key: [...]",
        )
    if table.write == "scd2" and not table.primary_key:
        return "write", "write: scd2 keeps versions per key; name it with primary_key: [...]"
    if (table.write == "scd2" or table.deletes != "ignore") and mode != "incremental":
        return (
            "write" if table.write == "scd2" else "deletes",
            "applies to incremental copies; a full copy replaces the whole table (set "
            "mode: incremental)",
        )
    copied = (
        {table.rename.get(c, c) for c in table.columns} if table.columns is not None else set()
    ) | set(table.rename.values())
    seen: dict[str, str] = {}
    for field, names in table.added_columns(audit).items():
        for name in names:
            if name in copied:
                return field, f"column {name!r} is also a copied column; choose another name"
            if name in seen:
                return field, f"column {name!r} is also named by {seen[name]}"
            seen[name] = field
    return None
