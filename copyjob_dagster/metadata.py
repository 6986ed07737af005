"""A `CopyResult` as materialization metadata: Dagster's standard table keys first, ours second.

`TableMetadataSet` is not exported by dagster 1.13, so the standard `dagster/` keys are written
here with the value types that the UI renders. Our own keys start with `copyjob/`.
"""

import dagster as dg

from copyjob_dagster.engine import CopyResult

ROW_COUNT = "dagster/row_count"
TABLE_NAME = "dagster/table_name"
COLUMN_SCHEMA = "dagster/column_schema"
COLUMN_LINEAGE = "dagster/column_lineage"

ROWS_READ = "copyjob/rows_read"
ROWS_WRITTEN = "copyjob/rows_written"
SECONDS = "copyjob/seconds"
ROWS_PER_SECOND = "copyjob/rows_per_second"
SOURCE = "copyjob/source"
DESTINATION = "copyjob/destination"
SOURCE_TABLE = "copyjob/source_table"


def copy_metadata(result: CopyResult, source_key: dg.AssetKey) -> dict[str, dg.MetadataValue]:
    """Everything a user checks after a copy; URLs are shown with their passwords masked."""
    plan = result.plan
    schema = plan.destination_schema
    return {
        ROW_COUNT: dg.MetadataValue.int(result.rows_written),
        TABLE_NAME: dg.MetadataValue.text(result.destination_location),
        COLUMN_SCHEMA: dg.MetadataValue.table_schema(
            dg.TableSchema(
                columns=[
                    dg.TableColumn(
                        name=field.name,
                        type=str(field.type),
                        constraints=dg.TableColumnConstraints(nullable=field.nullable),
                    )
                    for field in schema
                ]
            )
        ),
        COLUMN_LINEAGE: dg.MetadataValue.column_lineage(
            dg.TableColumnLineage(
                deps_by_column={
                    column.destination: [dg.TableColumnDep(source_key, column.source)]
                    for column in plan.columns
                }
            )
        ),
        ROWS_READ: dg.MetadataValue.int(result.rows_read),
        ROWS_WRITTEN: dg.MetadataValue.int(result.rows_written),
        SECONDS: dg.MetadataValue.float(round(result.seconds, 3)),
        ROWS_PER_SECOND: dg.MetadataValue.int(
            int(result.rows_read / result.seconds) if result.seconds > 0 else 0
        ),
        SOURCE: dg.MetadataValue.text(result.source_url),
        SOURCE_TABLE: dg.MetadataValue.text(plan.source_table),
        DESTINATION: dg.MetadataValue.text(result.destination_url),
    }
