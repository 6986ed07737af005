"""What every part of a copy job's config is built on: the strict frozen model, its text and
name types, the error a check raises for one field, and names made safe for asset keys."""

import hashlib
import re
import typing
from typing import Annotated, Any

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


def model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    """The model whose fields the mapping at `loc` in `root` holds (`tables.0.split`:
    SplitConfig); the deepest one found when `loc` goes further."""
    model = root
    for part in (p for p in loc if isinstance(p, str)):
        field = model.model_fields.get(part)
        inner = _models_in(field.annotation) if field else []
        if not inner:
            break
        model = inner[0]
    return model


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation names: itself, or inside `X | None`, `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]
