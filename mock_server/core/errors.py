"""The one error type every door turns into a JSON body matching ``contracts/error.schema.json``."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any


@dataclass
class ApiError(Exception):
    """An HTTP error with a specific category and a message naming what is wrong."""

    status: int
    category: str
    description: str
    field: str | None = None
    errors: list[dict[str, str]] = dc_field(default_factory=list)
    headers: dict[str, str] = dc_field(default_factory=dict)
    outcome: str | None = None
    """Set when the outcome engine chose this error: journaled with its reason."""
    reason: str | None = None
    delay_s: float = 0.0

    def body(self, request_id: str) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "status": "error",
            "description": self.description,
            "request_id": request_id,
            "category": self.category,
        }
        if self.field is not None:
            detail["field"] = self.field
        if self.errors:
            detail["errors"] = self.errors
        return {"detail": detail}
