"""Handlers for Synthflow's own API: ``POST /v2/prepare_inbound``, ``GET /v2/calls/{id}``, the OpenAPI document."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from mock_server.core import calls, checks, contracts, jsonio, outcomes
from mock_server.core.errors import ApiError
from mock_server.core.exchange import Request, Response, Result

if TYPE_CHECKING:
    from mock_server.core.backend import Backend


def prepare_inbound(backend: Backend, request: Request) -> Result:
    config = backend.config
    checks.bearer(config, request)
    body = checks.json_body(config, request)
    checks.contract(backend.request_validator, body)
    decision = backend.decide(request, body)
    reason = decision.journal_reason()
    outcome = decision.outcome or config.default_outcome
    if outcome in outcomes.ERROR_OUTCOMES:
        status, category, text, retry = outcomes.ERROR_OUTCOMES[outcome]
        raise ApiError(status, category, f"{text} (outcome {outcome!r}, from {decision.reason or 'server-default'})",
                       headers={"Retry-After": str(int(decision.params.get("retry-after", retry)))}
                       if retry else {}, outcome=outcome, reason=reason, delay_s=decision.delay_ms / 1000)
    if outcome in ("timeout", "reset"):
        hold = decision.params.get("hold-s", 30.0) if outcome == "timeout" else 0.0
        drop = "close" if outcome == "timeout" else "reset"
        return Result(Response(0, None, {}, hold + decision.delay_ms / 1000, drop=drop), outcome, reason)
    call_id = backend.ids.new()
    failed = outcome == "failed"
    if not failed:
        _take_limit_slots(backend, body, call_id, decision.settings_version)
    call = calls.new_call(body, call_id, int(time.time() * 1000),
                          error_message=calls.FAILED_MESSAGE if failed else None)
    status = config.failed_status if failed else 200
    encoded = jsonio.dumps(call)  # once: for the answer and the store
    delay = decision.delay_ms + (decision.params.get("delay-ms", 2000.0) if outcome == "slow" else 0.0)
    plan = decision.plan()
    if body.get("external_webhook_url"):
        plan = {**(plan or {}), "external_webhook_url": body["external_webhook_url"]}
    return Result(Response(status, encoded, delay_s=delay / 1000), outcome, reason, call_id, new_call=call, plan=plan)


def _take_limit_slots(backend: Backend, body: dict, call_id: str, settings_version: int) -> None:
    """Count the call against its agent's and workspace's limits, or answer 429 (README, "Limits")."""
    book = backend.books.get(settings_version)
    if not book:
        return
    keys = book.limits_for(body["model_id"], body.get("workspace_id"))
    if not keys:
        return
    refusal = backend.store.reserve_limits(keys, call_id, hold_s=backend.config.limit_hold_s, count_attempt=True)
    if refusal is not None:
        raise ApiError(429, "rate_limited", refusal.message(), headers={"Retry-After": str(refusal.retry_after)},
                       field="model_id" if refusal.key.startswith("agent:") else "workspace_id",
                       outcome="rate_limited", reason=f"limit {refusal.key} {refusal.kind}")


def get_call(backend: Backend, request: Request, call_id: str) -> Result:
    checks.bearer(backend.config, request)
    call = backend.store.get_call(call_id)
    if call is None:
        raise ApiError(404, "not_found", f"No call with id {call_id!r} was prepared on this mock", field="call_id")
    body = {"status": "ok", "response": {"pagination": {"total_records": 1, "limit": 1, "offset": 0},
                                         "calls": [call]}}
    return Result(Response(200, body), call_id=call_id)


def openapi(backend: Backend, request: Request) -> Result:
    return Result(Response(200, contracts.openapi_bundle()))
