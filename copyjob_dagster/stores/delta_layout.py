"""How copyjob lays out the data files of the Delta tables it writes: row groups, dictionary
pages and file size, for every write (full copies, appends, merges)."""

from deltalake import WriterProperties

from copyjob_dagster.stores.parquet_files import DICTIONARY_PAGE_BYTES, ROW_GROUP_ROWS

# The Rust writer holds a whole row group in memory, by default 1,048,576 rows: peak memory grew
# with the table (262 MB at 100,000 rows, 331 MB at 1,000,000). Row groups and dictionary pages
# as the Parquet folder store writes them keep it flat, and columns of distinct values plain:
# with 1 MiB dictionaries, a merge that rewrote a 2,000,000-row table took 1.35-2x the time, for
# 13% larger files (benchmarks/results/delta-merge.md).
WRITER = WriterProperties(
    max_row_group_size=ROW_GROUP_ROWS, dictionary_page_size_limit=DICTIONARY_PAGE_BYTES
)
# A merge rewrites each file that holds a changed row: files of 4 MiB (not delta-rs's 100 MiB)
# keep a merge of recent rows to the few files that hold them. A merge takes its file size from
# the table's property only, which delta-rs sets when it creates the table (not on overwrite).
TARGET_FILE_BYTES = 4 * 1024 * 1024
TABLE_PROPERTIES = {"delta.targetFileSize": str(TARGET_FILE_BYTES)}
