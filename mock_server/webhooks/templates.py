"""Fill an action body's placeholders: ``<call_id>``, ``<external_id>``, ``<diversion>``,
``<twilio_call_sid>`` and ``{X-Header-Name}`` (header names match case-insensitively).

A JSON body's strings are filled one by one, so a value can never break the JSON
around it. An ``{X-...}`` placeholder with no such header becomes ``""`` and is
reported as missing.
"""

from __future__ import annotations

import re
from typing import Any

_PLACEHOLDER = re.compile(r"<(call_id|external_id|diversion|twilio_call_sid)>|\{(X-[A-Za-z0-9!#$%&'*+.^_`|~-]+)\}",
                          re.IGNORECASE)


def render(template: Any, variables: dict[str, str], missing: list[str] | None = None) -> Any:
    """``template`` with placeholders replaced; names not found are appended to ``missing``."""
    if isinstance(template, str):
        return _fill(template, variables, missing)
    if isinstance(template, dict):
        return {k: render(v, variables, missing) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, variables, missing) for v in template]
    return template


def _fill(text: str, variables: dict[str, str], missing: list[str] | None) -> str:
    folded = {k.lower(): v for k, v in variables.items()}

    def one(match: re.Match[str]) -> str:
        key = match.group(0).lower()
        if key in folded:
            return folded[key]
        if missing is not None:
            missing.append(match.group(0))
        return ""

    return _PLACEHOLDER.sub(one, text)
