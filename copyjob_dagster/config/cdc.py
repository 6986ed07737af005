"""What a `mode: cdc` table may not ask for: the change log does it by itself."""

from typing import TYPE_CHECKING

from copyjob_dagster.config.added_columns import AuditColumns

if TYPE_CHECKING:
    from copyjob_dagster.config.models import TableConfig


def cdc_problem(table: "TableConfig", audit: AuditColumns | None) -> tuple[str, str] | None:
    """The field of a `mode: cdc` table that asks for what a change log does by itself."""
    if table.incremental_column:
        return "incremental_column", (
            "mode: cdc follows the source's change log, which needs no incremental_column "
            "(remove it)"
        )
    if table.write:
        return "write", "mode: cdc applies each change by primary key (remove `write:`)"
    if table.deletes != "ignore":
        return "deletes", "mode: cdc applies deletes from the change log (remove `deletes:`)"
    if table.split is not None:
        return "split", "mode: cdc does not split its first copy yet (remove `split:`)"
    if audit is not None:
        return "audit_columns", "mode: cdc does not stamp audit columns yet (audit_columns: false)"
    return None
