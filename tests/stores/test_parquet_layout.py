"""The Parquet files a copy writes are laid out for their readers whatever the size of the
batches the source hands over: row groups of about ROW_GROUP_ROWS rows, and dictionaries for
columns of few distinct values."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from copyjob_dagster.stores import parquet_files as files


def _batches(rows: int, size: int) -> list[pa.RecordBatch]:
    return [
        pa.record_batch(
            {
                "id": pa.array(range(start, min(start + size, rows)), pa.int64()),
                "status": pa.array(
                    [
                        ("paid", "shipped", "open")[n % 3]
                        for n in range(start, min(start + size, rows))
                    ]
                ),
            }
        )
        for start in range(0, rows, size)
    ]


def test_small_batches_make_row_groups_of_about_the_configured_rows(tmp_path: Path) -> None:
    batches = _batches(250_000, 7_000)  # PostgreSQL's CSV blocks are about this size
    target = tmp_path / "t.parquet"

    written = files.write_file(target, batches[0].schema, iter(batches))

    parquet = pq.ParquetFile(target)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    assert written == sum(sizes) == 250_000
    assert all(files.ROW_GROUP_ROWS <= size < files.ROW_GROUP_ROWS + 7_000 for size in sizes[:-1])
    assert 0 < sizes[-1] < files.ROW_GROUP_ROWS + 7_000
    assert parquet.read().equals(pa.Table.from_batches(batches))


def test_a_column_of_few_distinct_values_stays_dictionary_encoded(tmp_path: Path) -> None:
    batches = _batches(200_000, 50_000)
    target = tmp_path / "t.parquet"

    files.write_file(target, batches[0].schema, iter(batches))

    status = pq.ParquetFile(target).metadata.row_group(0).column(1)
    assert status.path_in_schema == "status"
    assert "RLE_DICTIONARY" in status.encodings
    # 100,000 values of one of three words: about 900 KB written plain
    assert status.total_uncompressed_size < 100_000


def test_a_column_of_distinct_values_is_written_plain_from_its_first_row_group(
    tmp_path: Path,
) -> None:
    """Its dictionary would outgrow DICTIONARY_PAGE_BYTES in every row group: the writer does
    not build one only to drop it, and the file holds the same rows."""
    batches = _batches(200_000, 50_000)
    target = tmp_path / "t.parquet"

    files.write_file(target, batches[0].schema, iter(batches))

    parquet = pq.ParquetFile(target)
    for group in range(parquet.metadata.num_row_groups):
        ids, status = (parquet.metadata.row_group(group).column(c) for c in (0, 1))
        assert "RLE_DICTIONARY" not in ids.encodings
        assert "RLE_DICTIONARY" in status.encodings
    assert parquet.read().equals(pa.Table.from_batches(batches))
    empty = tmp_path / "empty.parquet"  # no row group to judge: a file of no rows all the same
    assert files.write_file(empty, batches[0].schema, iter([])) == 0
    assert pq.read_table(empty).schema == batches[0].schema
