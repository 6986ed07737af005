"""What every part of a copy job's config is built on: the strict frozen model, its text and
name types, the error a check raises for one field, and names made safe for asset keys."""

import hashlib
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

Text = Annotated[str, Field(min_length=1)]


class FieldProblem(ValueError):
    """A model check's error that belongs to one field (of one table), not to the whole model."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class StrictModel(BaseModel):
    """Unknown keys are refused (a typo is an error, not a silently ignored setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def key_part(name: str) -> str:
    """A name as a valid asset key part: characters other than letters, digits and _ become _."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def unique_key_part(name: str) -> str:
    """`key_part(name)`, with a hash of `name` when characters were replaced: source tables
    cannot be renamed, so two of them (`a-b` and `a_b`) must never share a key."""
    part = key_part(name)
    if part == name:
        return part
    return f"{part}_{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"
