"""When a copy job runs by itself, and how a failed table is retried: its schedule, its
new-data sensor and its retries."""

import zoneinfo
from typing import Literal

from croniter import croniter
from pydantic import Field, field_validator

from copyjob_dagster.config.base import StrictModel, Text

Status = Literal["running", "stopped"]


class ScheduleConfig(StrictModel):
    """When a job runs by itself: a cron expression read in a time zone."""

    cron: Text = Field(description="5-field cron expression, e.g. '*/15 * * * *'")
    timezone: Text = Field("UTC", description="IANA time zone the cron is read in")
    status: Status = Field("running", description="whether the schedule starts running")

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, cron: str) -> str:
        return valid_cron(cron)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, timezone: str) -> str:
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{timezone!r} is not a known time zone; write an IANA name such as "
                f"'Europe/Paris' or 'UTC'"
            ) from None
        return timezone


class SensorConfig(StrictModel):
    """A sensor that copies the tables whose source holds rows beyond their watermark."""

    minimum_interval_seconds: int = Field(
        60, ge=5, strict=True, description="seconds between two looks at the source"
    )
    status: Status = Field("running", description="whether the sensor starts running")


class RetryConfig(StrictModel):
    """How a table's copy is retried after a transient error (a lost connection, a deadlock)."""

    max_retries: int = Field(3, ge=0, strict=True)
    delay_seconds: float = Field(10, ge=0, description="wait before the first retry")
    backoff: Literal["exponential", "linear", "constant"] = Field(
        "exponential", description="how the wait grows from one retry to the next"
    )


def is_valid_cron(expression: str) -> bool:
    """True for the 5-field cron expressions that Dagster schedules accept."""
    return len(expression.split()) == 5 and croniter.is_valid(expression)


def valid_cron(expression: str) -> str:
    if not is_valid_cron(expression):
        raise ValueError(
            f"{expression!r} is not a 5-field cron expression (minute hour day month weekday), "
            f'e.g. "*/15 * * * *"'
        )
    return expression
