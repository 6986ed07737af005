"""The exceptions of copyjob_dagster.

Every error a user can cause is a `CopyJobError`: its message names what is wrong and where
(file, job, table, field, store) and is shown without a traceback. Driver exceptions are
translated at the store boundary so that no password or driver internals reach the user.
"""


class CopyJobError(Exception):
    """Base class: an error whose message is meant for the user, as is.

    `transient` marks an error that trying again may cure (a dropped or refused connection, a
    deadlock, a busy database): a run's retry policy retries it. Any other error is for the user
    to fix, and is not retried.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ConfigError(CopyJobError):
    """A copy job file is invalid: bad YAML, unknown or missing fields, bad values."""


class SourceError(CopyJobError):
    """The source store cannot be reached or read, or lacks a table or column."""


class DestinationError(CopyJobError):
    """The destination store cannot be reached or written."""


class SchemaError(CopyJobError):
    """A column's type cannot be copied, or the source schema changed incompatibly."""


class WatermarkError(CopyJobError):
    """A stored watermark cannot be read back, or does not match its column."""


class MassDeleteError(CopyJobError):
    """A run would delete more of a table than its guard allows; nothing was written."""
