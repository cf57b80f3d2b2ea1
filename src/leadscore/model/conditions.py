"""Conditions on a value (a trait, an event property or a video fact).

In the model file a condition is either a bare value (equality) or a mapping of one or more
operators, all of which must hold:  ``{gte: 50}``, ``{in: [a, b]}``, ``{glob: "/blog/*"}``,
``{is: disposable_email}``.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

JunkCheck = Literal["disposable_email", "role_email", "invalid_email", "gibberish"]
Scalar = str | int | float | bool


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: list[Scalar] | None = Field(None, alias="in")
    not_in: list[Scalar] | None = None
    contains: str | None = None
    prefix: str | None = None
    glob: str | None = None
    regex: str | None = None
    ignore_case: bool = False
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    between: tuple[float, float] | None = None
    exists: bool | None = None
    is_: JunkCheck | None = Field(None, alias="is")
    is_not: JunkCheck | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_value_means_equals(cls, data: Any) -> Any:
        if isinstance(data, (str, int, float, bool)):
            return {"eq": data}
        if isinstance(data, list):
            return {"in": data}
        return data

    @model_validator(mode="after")
    def _something_to_check(self) -> "Condition":
        ops = self.model_dump(exclude_none=True, exclude={"ignore_case"})
        if not ops:
            raise ValueError("a condition needs at least one operator (eq, in, gte, glob, exists, is, ...)")
        if self.regex is not None:
            import re
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from None
        return self
