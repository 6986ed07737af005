"""Deletions in a Delta table, found before the window's commit and applied inside it.

The destination's keys (with whether each row is live: not marked deleted, or the current
version) and the source's keys are spilled to a temporary folder in hash buckets (as the
Parquet folder store does, see `parquet_changes`), and each bucket pair is anti-joined in
memory: the keys gone from the source, and for soft deletions the marked keys that are back,
are kept on disk. The engine's guard judges `pending` of `live` before anything is written.

Nothing is changed here: the gone keys become rows of the window's one merge (`delta_merge`),
tagged with what to do with the destination rows of that key, so the window's rows and the
deletions are one Delta commit. When the window has no row, `apply` makes that merge alone.
"""

import math
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from copyjob_dagster.stores.base import DeletePolicy, DeletionCounts
from copyjob_dagster.stores.parquet_changes import BUCKET_KEYS, _buckets

OP = "_copyjob_op"
# What a merge row does to the destination rows of its key (see delta_merge.merge_predicate).
UPSERT, VERSION, CLOSE, DELETE, MARK, RESTORE, RETIRE = "u", "v", "c", "d", "m", "r", "x"
LIVE, MARKED = "_copyjob_live", "_copyjob_marked"


class DeltaKeyDiff:
    """The destination's rows whose key left the source (see the module's doc)."""

    def __init__(
        self,
        dataset: ds.Dataset,
        key_schema: pa.Schema,
        source_keys: Iterable[pa.RecordBatch],
        policy: DeletePolicy,
        apply_alone: Callable[["DeltaKeyDiff"], DeletionCounts],
    ) -> None:
        self.policy = policy
        self.key = list(key_schema.names)
        self.applied: DeletionCounts | None = None
        self._apply_alone = apply_alone
        self._dir = tempfile.TemporaryDirectory(prefix="copyjob-delta-keys-")
        workdir = Path(self._dir.name)
        self._buckets = max(1, math.ceil(dataset.count_rows() / BUCKET_KEYS))
        source = self._spill(workdir / "source", source_keys, key_schema)
        there = self._spill(workdir / "destination", self._destination(dataset), None)
        self.live = self.pending = 0
        self._gone: list[Path] = []
        restores = []
        for bucket in range(self._buckets):
            mine = pa.ipc.open_file(there[bucket]).read_all() if there else None
            if mine is None or not mine.num_rows:
                continue
            theirs = pa.ipc.open_file(source[bucket]).read_all()
            gone = mine.join(theirs, keys=self.key, join_type="left anti")
            self.live += pc.sum(mine.column(LIVE)).as_py() or 0
            gone_live = gone.filter(gone.column(LIVE))
            self.pending += gone_live.num_rows
            acted = gone if policy.mode == "hard" else gone_live
            keys = acted.select(self.key).group_by(self.key).aggregate([])
            if keys.num_rows:
                path = workdir / f"gone-{bucket}.arrow"
                with pa.ipc.new_file(path, keys.schema) as writer:
                    writer.write_table(keys)
                self._gone.append(path)
            if policy.mode == "soft" and policy.versions is None:
                back = mine.filter(mine.column(MARKED)).join(
                    theirs, keys=self.key, join_type="left semi"
                )
                restores.append(back.select(self.key).group_by(self.key).aggregate([]))
        self.restores = pa.concat_tables(restores) if restores else None

    def _destination(self, dataset: ds.Dataset) -> Iterator[pa.RecordBatch]:
        """The destination's keys, each row with whether it is live and marked."""
        policy, names = self.policy, dataset.schema.names
        columns = list(self.key)
        if policy.versions is not None:
            columns.append(policy.versions.is_current)
        elif policy.mode == "soft" and policy.marker in names:
            columns.append(policy.marker)
        for batch in dataset.to_batches(columns=columns):
            rows = batch.num_rows
            marked = pa.repeat(pa.scalar(False), rows)
            if policy.versions is not None:
                live = pc.fill_null(batch.column(policy.versions.is_current), False)
            elif len(columns) > len(self.key):
                marked = batch.column(policy.marker).is_valid()
                live = pc.invert(marked)
            else:
                live = pa.repeat(pa.scalar(True), rows)
            yield pa.RecordBatch.from_arrays(
                [*(batch.column(k) for k in self.key), live, marked],
                names=[*self.key, LIVE, MARKED],
            )

    def _spill(
        self, prefix: Path, batches: Iterable[pa.RecordBatch], schema: pa.Schema | None
    ) -> list[Path]:
        paths = [Path(f"{prefix}-{b}.arrow") for b in range(self._buckets)]
        writers: list[pa.ipc.RecordBatchFileWriter] = []
        try:
            for batch in batches:
                if not writers:
                    writers = [pa.ipc.new_file(p, schema or batch.schema) for p in paths]
                for bucket, part in self._split(batch):
                    writers[bucket].write_batch(part)
            if not writers and schema is not None:
                writers = [pa.ipc.new_file(p, schema) for p in paths]
        finally:
            for writer in writers:
                writer.close()
        return paths if writers else []

    def _split(self, batch: pa.RecordBatch) -> Iterator[tuple[int, pa.RecordBatch]]:
        if self._buckets == 1:
            yield 0, batch
            return
        buckets = _buckets(batch, self.key, self._buckets)
        for bucket in range(self._buckets):
            part = batch.filter(pa.array(buckets == bucket))
            if part.num_rows:
                yield bucket, part

    @property
    def has_changes(self) -> bool:
        return bool(self._gone) or bool(self.restores is not None and self.restores.num_rows)

    def gone_keys(self) -> Iterator[pa.RecordBatch]:
        """The keys whose destination rows are deleted, marked or closed, each key once."""
        for path in self._gone:
            yield from pa.ipc.open_file(path).read_all().to_batches()

    def drop_restores(self, window_keys: pa.Table) -> None:
        """Forget restores of keys the window writes itself (its rows are not marked)."""
        if self.restores is not None and self.restores.num_rows:
            self.restores = self.restores.join(window_keys, keys=self.key, join_type="left anti")

    def counts(self, deleted: int) -> DeletionCounts:
        if self.policy.mode == "hard":
            return DeletionCounts(deleted=deleted)
        restored = self.restores.num_rows if self.restores is not None else 0
        return DeletionCounts(soft_deleted=self.pending, restored=restored)

    def apply(self) -> DeletionCounts:
        """The counts of the window's commit; a commit of its own when the window had no row."""
        if self.applied is None:
            self.applied = self._apply_alone(self) if self.has_changes else DeletionCounts()
        return self.applied

    def close(self) -> None:
        self._dir.cleanup()
