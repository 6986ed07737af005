"""What a copy job asks of its stores that they cannot do, found from their capabilities before
anything connects; each problem names the table's field, as the job file's own checks do."""

from collections.abc import Iterator

from copyjob_dagster.config import CopyJob, FieldProblem, TableConfig
from copyjob_dagster.stores.registry import capabilities_of, url_problem


def store_problems(job: CopyJob) -> Iterator[FieldProblem]:
    for field, store in (("source", job.source), ("destination", job.destination)):
        problem = url_problem(store)
        if problem:
            yield FieldProblem((field, "url"), problem)
            return
    source = capabilities_of(job.source)
    destination = capabilities_of(job.destination)
    if job.maintenance is not None and not destination.maintenance:
        yield FieldProblem(("maintenance",), _no_upkeep(job))
    folds_case = destination.case_insensitive_names
    folded: dict[str, TableConfig] = {}
    for index, table in enumerate(job.tables):
        if folds_case:
            other = folded.setdefault(table.destination_name.casefold(), table)
            if other.destination_name != table.destination_name:
                yield FieldProblem(
                    ("tables", index, "to"),
                    f"{table.destination_name!r} and {other.destination_name!r} (table "
                    f"{other.name!r}) differ only in case, and SQLite takes them for one "
                    f"table; give one of them another `to:`",
                )
        if table.maintenance and not destination.maintenance:
            yield FieldProblem(("tables", index, "maintenance"), _no_upkeep(job))
        why_not = f": {destination.why_not}" if destination.why_not else " yet"
        if table.deletes != "ignore" and not destination.deletes:
            yield FieldProblem(
                ("tables", index, "deletes"),
                f"a {job.destination.technology} destination does not apply deletions"
                f"{why_not} (or set deletes: ignore)",
            )
        if table.write == "scd2" and not destination.versions:
            yield FieldProblem(
                ("tables", index, "write"),
                f"a {job.destination.technology} destination does not keep row versions"
                f"{why_not} (or write: append)",
            )
        if job.is_cdc(table) and not source.change_stream:
            yield FieldProblem(
                ("tables", index, "mode"),
                f"mode: cdc reads a change stream, which a {job.source.technology} source "
                f"does not offer yet (PostgreSQL and MariaDB do); use mode: incremental",
            )
        if job.is_cdc(table) and destination.applies_changes is None:
            yield FieldProblem(
                ("tables", index, "mode"),
                f"a {job.destination.technology} destination does not take changes yet "
                f"(PostgreSQL, MySQL/MariaDB, SQLite and Parquet folders do)",
            )
        by_feed = job.mode == "incremental" and not table.incremental_column
        if table.split is not None and source.change_feed and by_feed:
            yield FieldProblem(
                ("tables", index, "split"),
                "a copy by the change data feed (no incremental_column) reads the changes since "
                "the version last copied in one stream: remove `split:`, or name an "
                "incremental_column to read each window in parts",
            )
        elif table.split is not None and not source.split_reads:
            yield FieldProblem(
                ("tables", index, "split"),
                f"a split reads ranges in parallel inside one snapshot, which a "
                f"{job.source.technology} source cannot share between connections; it needs "
                f"a PostgreSQL or MySQL/MariaDB source or a Delta table (remove `split:`)",
            )


def _no_upkeep(job: CopyJob) -> str:
    return (
        f"compaction and vacuum are upkeep of Delta tables; a {job.destination.technology} "
        f"destination has neither (remove `maintenance:`, or copy to a delta:// destination)"
    )
