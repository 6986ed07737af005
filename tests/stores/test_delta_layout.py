"""The files of a Delta table copyjob writes: a column of distinct values (a key) is stored about
plain, 8 bytes an integer, not through a dictionary that saves nothing, while a column of few
distinct values keeps its dictionary (see stores/delta_layout.py)."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from copyjob_dagster.stores.delta import DeltaStore

ROWS = 200_000


def test_distinct_keys_take_about_8_bytes_and_a_status_its_dictionary(tmp_path: Path) -> None:
    batches = [
        pa.record_batch(
            {
                "id": pa.array(range(start, start + 10_000), pa.int64()),
                "status": pa.array([("paid", "sent", "open")[n % 3] for n in range(10_000)]),
            }
        )
        for start in range(0, ROWS, 10_000)
    ]
    store = DeltaStore(f"delta:///{tmp_path}", "destination")

    written = store.replace("orders", batches[0].schema, ("id",), iter(batches))

    table = DeltaTable(str(tmp_path / "orders"))
    assert written == table.count() == ROWS
    key_bytes = status_bytes = 0
    for name in table.file_uris():
        metadata = pq.ParquetFile(name).metadata
        for group in range(metadata.num_row_groups):
            key, status = (metadata.row_group(group).column(c) for c in (0, 1))
            assert (key.path_in_schema, status.path_in_schema) == ("id", "status")
            assert "RLE_DICTIONARY" in status.encodings
            key_bytes += key.total_uncompressed_size
            status_bytes += status.total_uncompressed_size
    # Through a dictionary of 50,000 distinct keys a row group, about 10 bytes a key.
    assert key_bytes < 8.8 * ROWS
    assert status_bytes < ROWS // 2  # three words as dictionary indices
