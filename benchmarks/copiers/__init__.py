"""The ways of copying that run as Python, one module per library so that each process imports
only what its way needs (imports count in its memory, not in its time)."""

# The query each way sends for PostgreSQL -> MariaDB: MySQL has no boolean literal `t` and no
# time zone in DATETIME, so booleans go as 0/1 and aware timestamps as UTC.
PG_FOR_MYSQL = (
    "SELECT id, customer_id, amount, status, note, created_at, updated_at AT TIME ZONE 'UTC',"
    " paid::int, order_date, score FROM orders"
)
