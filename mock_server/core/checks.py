"""Checks on a request every handler shares: credentials, the JSON body, the contract, query arguments.

Each raises :class:`~mock_server.core.errors.ApiError` naming the field and the rule.
"""

from __future__ import annotations

import hmac
import json
import math
from typing import Any

from mock_server.core.config import MockConfig
from mock_server.core.errors import ApiError
from mock_server.core.exchange import Request

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="synthflow-mock"'}


def bearer(config: MockConfig, request: Request) -> None:
    value = request.headers.get("authorization")
    if not value:
        raise ApiError(401, "unauthorized", "Missing Authorization header; send 'Authorization: Bearer <token>'",
                       field="Authorization", headers=_CHALLENGE)
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized",
                       "Malformed Authorization header; expected 'Bearer <token>' with a non-empty token",
                       field="Authorization", headers=_CHALLENGE)
    if config.tokens and not any(hmac.compare_digest(token.strip(), t) for t in config.tokens):
        raise ApiError(401, "unauthorized", "The bearer token is not one this mock was told to accept (--token)",
                       field="Authorization", headers=_CHALLENGE)


def admin(config: MockConfig, request: Request) -> None:
    expected = config.admin_token
    if expected is None:
        return
    given = request.headers.get("x-mock-admin-token")
    if not given:
        raise ApiError(401, "unauthorized", "The admin API needs the X-Mock-Admin-Token header",
                       field="X-Mock-Admin-Token")
    if not hmac.compare_digest(given, expected):
        raise ApiError(403, "forbidden", "X-Mock-Admin-Token does not match", field="X-Mock-Admin-Token")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_body(config: MockConfig, request: Request) -> Any:
    if len(request.body) > config.max_body_bytes:
        declared = request.headers.get("content-length", "more than the limit")
        raise ApiError(413, "payload_too_large",
                       f"Body is {declared} bytes; the limit is {config.max_body_bytes} bytes")
    ctype = request.headers.get("content-type", "")
    mime = ctype.split(";", 1)[0].strip().lower()
    if mime != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type must be application/json, got {ctype or 'none'}", field="Content-Type")
    try:
        return json.loads(request.body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"Body is not valid JSON: {exc}") from None


def _pointer(parts: list[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def contract(validator: Any, body: Any) -> None:
    """Validate against a compiled contract; 422 listing every violation as {pointer, rule, message}."""
    if validator.is_valid(body):
        return
    errors = []
    for err in validator.iter_errors(body):
        path = list(err.instance_path)
        rule = str(err.schema_path[-1]) if err.schema_path else "schema"
        kind = err.kind
        if rule == "required":
            path.append(kind.property)
        if rule == "additionalProperties" and kind.unexpected:
            for name in kind.unexpected:
                errors.append({"pointer": _pointer([*path, name]), "rule": rule,
                               "message": f"unknown field {name!r} is not allowed"})
            continue
        errors.append({"pointer": _pointer(path), "rule": rule, "message": err.message})
    errors.sort(key=lambda e: e["pointer"])
    first = errors[0]
    summary = f"{len(errors)} violation(s); first: {first['pointer'] or '/'} {first['rule']}: {first['message']}"
    raise ApiError(422, "validation_error", f"Request body breaks the contract: {summary}",
                   field=first["pointer"], errors=errors)


def int_arg(request: Request, name: str, default: int | None, low: int, high: int) -> Any:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "validation_error", f"{name} must be an integer, got {raw!r}", field=name) from None
    if not low <= value <= high:
        raise ApiError(400, "validation_error", f"{name} must be between {low} and {high}", field=name)
    return value


def float_arg(request: Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ApiError(400, "validation_error", f"{name} must be epoch seconds, got {raw!r}", field=name)
    return value
