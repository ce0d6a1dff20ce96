"""The HTTP semantics of the mock, free of any web framework.

``Backend.handle`` takes a transport-neutral :class:`Request` and returns a
:class:`Response`. The Flask app and the in-process ``responses`` door both
call it (through the same route table), so they cannot disagree. Every request
that reaches it is journaled, with the outcome chosen and why.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from mock_server import __version__
from mock_server.core import calls, contracts, outcomes, verify
from mock_server.core.config import MockConfig
from mock_server.core.errors import ApiError
from mock_server.core.journal import http_entry
from mock_server.core.store import Store

ROUTES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("/v2/prepare_inbound", ("POST",), "prepare_inbound"),
    ("/v2/calls/<call_id>", ("GET",), "get_call"),
    ("/openapi.json", ("GET",), "openapi"),
    ("/_mock/health", ("GET",), "admin_health"),
    ("/_mock/calls", ("GET",), "admin_calls"),
    ("/_mock/calls/<call_id>/sip", ("GET",), "admin_sip_ladder"),
    ("/_mock/journal", ("GET",), "admin_journal"),
    ("/_mock/reset", ("POST",), "admin_reset"),
    ("/_mock/prepare_bulk", ("POST",), "admin_prepare_bulk"),
    ("/_mock/scenarios", ("GET", "POST", "DELETE"), "admin_scenarios"),
    ("/_mock/policy", ("GET", "PUT"), "admin_policy"),
    ("/_mock/verify", ("POST",), "admin_verify"),
)
"""(rule, methods, endpoint): the one route table both the Flask app and the in-process door use."""


def url_map() -> Map:
    return Map([Rule(rule, methods=list(methods), endpoint=endpoint) for rule, methods, endpoint in ROUTES])


@dataclass(slots=True)
class Request:
    """A request as every door hands it to the core. Header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    query: dict[str, str] = field(default_factory=dict)
    remote: str | None = None


@dataclass(slots=True)
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Each door waits this long before answering (slow outcomes, latency policy)."""
    drop: bool = False
    """Each door drops the connection instead of answering (timeout and reset outcomes)."""

    def body_bytes(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode()


@dataclass(slots=True)
class _Result:
    """What a handler decided, beside its response: for the journal and the store."""

    response: Response
    outcome: str | None = None
    reason: str | None = None
    call_id: str | None = None
    new_call: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None


FAILED_MESSAGE = "Synthflow service outage (simulated by synthflow-mock): the call could not be registered."
_ERROR_OUTCOMES: dict[str, tuple[int, str, str, int]] = {
    # outcome: (status, category, description, default Retry-After seconds or 0)
    "unauthorized": (401, "unauthorized", "The API key was refused", 0),
    "invalid": (422, "validation_error", "The request was refused as invalid", 0),
    "rate_limited": (429, "rate_limited",
                     "429: Rate limit exceeded. Your rate limit per minute is 60. Contact Sales to increase the rate "
                     "limit.", 30),
    "server_error": (500, "internal_error", "Internal server error", 0),
    "unavailable": (503, "service_unavailable", "Service unavailable", 30),
}
_MATCH_FIELDS = ("path", "from_number", "to_number", "model_id", "workspace_id")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _pointer(parts: list[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class Backend:
    """Calls, journal and HTTP behaviour shared by every door."""

    def __init__(self, config: MockConfig | None = None, store: Store | None = None) -> None:
        self.config = config or MockConfig()
        self.store = store or Store(self.config.store_path, journal_limit=self.config.journal_limit,
                                    calls_limit=self.config.calls_limit)
        self.ids = calls.IdSource(self.config.seed)
        self.started = time.time()
        self.url_map = url_map()
        self._request_validator = contracts.fast_validator(
            "prepare-inbound-request.schema.json", self.config.allow_extra_fields)
        self._policy_version = -1
        self._policy_cache: dict[str, Any] | None = None
        if self.config.policy:
            self.store.set_policy(outcomes.validate_policy(self.config.policy), only_if_unset=True)

    # -- entry points ---------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Route and answer one request (the in-process door's entry point)."""
        adapter = self.url_map.bind("mock")
        try:
            endpoint, args = adapter.match(request.path, request.method)
        except MethodNotAllowed as exc:
            return self.method_not_allowed(request, exc.valid_methods or [])
        except NotFound:
            return self.not_found(request)
        return self.dispatch(str(endpoint), request, args)

    def dispatch(self, endpoint: str, request: Request, args: dict[str, Any]) -> Response:
        """Answer a routed request and journal it (the Flask views' entry point)."""
        request_id = os.urandom(12).hex()
        try:
            if endpoint.startswith("admin_"):
                self._check_admin(request)
            result: _Result = getattr(self, "_" + endpoint)(request, **args)
            error = None
        except ApiError as exc:
            result = _Result(Response(exc.status, exc.body(request_id), dict(exc.headers), exc.delay_s),
                             exc.outcome, exc.reason)
            error = exc.category
        kind = "admin" if endpoint.startswith("admin_") else "http"
        return self._finish(request, request_id, result, error, kind=kind)

    def not_found(self, request: Request) -> Response:
        return self._unrouted(request, ApiError(404, "not_found", f"No route for {request.method} {request.path}"))

    def method_not_allowed(self, request: Request, allowed: list[str]) -> Response:
        allowed = sorted(set(allowed) - {"HEAD", "OPTIONS"}) or sorted(allowed)
        err = ApiError(405, "method_not_allowed",
                       f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}",
                       headers={"Allow": ", ".join(allowed)})
        return self._unrouted(request, err)

    def _unrouted(self, request: Request, err: ApiError) -> Response:
        request_id = os.urandom(12).hex()
        result = _Result(Response(err.status, err.body(request_id), dict(err.headers)))
        return self._finish(request, request_id, result, err.category, kind="http")

    def _finish(self, request: Request, request_id: str, result: _Result, error: str | None, kind: str) -> Response:
        response = result.response
        response.headers["X-Request-Id"] = request_id
        entry = http_entry(
            time=time.time(), request_id=request_id, method=request.method, path=request.path,
            query=request.query, headers=request.headers, body=request.body,
            body_limit=self.config.journal_body_limit, remote=request.remote, status=response.status,
            outcome=result.outcome, reason=result.reason, call_id=result.call_id, error=error,
        )
        entry["kind"] = kind
        if result.new_call is not None:
            self.store.add_call(result.new_call, entry, plan=result.plan, call_json=response.body_bytes())
        else:
            self.store.record(entry)
        return response

    # -- checks -----------------------------------------------------------------------
    def _check_bearer(self, request: Request) -> None:
        value = request.headers.get("authorization")
        challenge = {"WWW-Authenticate": 'Bearer realm="synthflow-mock"'}
        if not value:
            raise ApiError(401, "unauthorized", "Missing Authorization header; send 'Authorization: Bearer <token>'",
                           field="Authorization", headers=challenge)
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized",
                           "Malformed Authorization header; expected 'Bearer <token>' with a non-empty token",
                           field="Authorization", headers=challenge)
        if self.config.tokens and not any(hmac.compare_digest(token.strip(), t) for t in self.config.tokens):
            raise ApiError(401, "unauthorized", "The bearer token is not one this mock was told to accept (--token)",
                           field="Authorization", headers=challenge)

    def _check_admin(self, request: Request) -> None:
        expected = self.config.admin_token
        if expected is None:
            return
        given = request.headers.get("x-mock-admin-token")
        if not given:
            raise ApiError(401, "unauthorized", "The admin API needs the X-Mock-Admin-Token header",
                           field="X-Mock-Admin-Token")
        if not hmac.compare_digest(given, expected):
            raise ApiError(403, "forbidden", "X-Mock-Admin-Token does not match", field="X-Mock-Admin-Token")

    def _json_body(self, request: Request) -> Any:
        if len(request.body) > self.config.max_body_bytes:
            declared = request.headers.get("content-length", "more than the limit")
            raise ApiError(413, "payload_too_large",
                           f"Body is {declared} bytes; the limit is {self.config.max_body_bytes} bytes")
        ctype = request.headers.get("content-type", "")
        mime = ctype.split(";", 1)[0].strip().lower()
        if mime != "application/json":
            shown = ctype or "none"
            raise ApiError(415, "unsupported_media_type",
                           f"Content-Type must be application/json, got {shown}", field="Content-Type")
        try:
            return json.loads(request.body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "invalid_json", f"Body is not valid JSON: {exc}") from None

    def _validate(self, body: Any) -> None:
        if self._request_validator.is_valid(body):
            return
        errors = []
        for err in self._request_validator.iter_errors(body):
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

    # -- Synthflow API ----------------------------------------------------------------
    def _prepare_inbound(self, request: Request) -> _Result:
        self._check_bearer(request)
        body = self._json_body(request)
        self._validate(body)
        decision = self._decide(request, body)
        reason = decision.reason if decision.sip_reason == "server-default" else (
            f"{decision.reason}; sip={decision.sip} ({decision.sip_reason})")
        outcome = decision.outcome
        if outcome in _ERROR_OUTCOMES:
            status, category, text, retry = _ERROR_OUTCOMES[outcome]
            raise ApiError(status, category, f"{text} (outcome {outcome!r}, from {decision.reason})",
                           headers={"Retry-After": str(int(decision.params.get("retry-after", retry)))}
                           if retry else {}, outcome=outcome, reason=reason, delay_s=decision.delay_ms / 1000)
        if outcome in ("timeout", "reset"):
            hold = decision.params.get("hold-s", 30.0) if outcome == "timeout" else 0.0
            return _Result(Response(0, None, {}, hold + decision.delay_ms / 1000, drop=True), outcome, reason)
        call_id = self.ids.new()
        now_ms = int(time.time() * 1000)
        failed = outcome == "failed"
        call = calls.new_call(body, call_id, now_ms, error_message=FAILED_MESSAGE if failed else None)
        status = self.config.failed_status if failed else 200
        encoded = json.dumps(call, separators=(",", ":")).encode()  # once: for the answer and the store
        delay = decision.delay_ms + (decision.params.get("delay-ms", 2000.0) if outcome == "slow" else 0.0)
        plan = decision.plan() if decision.sip_reason != "server-default" or decision.params else None
        return _Result(Response(status, encoded, delay_s=delay / 1000), outcome, reason, call_id, new_call=call,
                       plan=plan)

    def _decide(self, request: Request, body: dict[str, Any]) -> outcomes.Decision:
        """Walk the sources in precedence order (outcomes.py): header, scenario, magic number, policy."""
        decision = outcomes.server_default(self.config)
        prefer = request.headers.get("prefer")
        if prefer:
            outcomes.from_spec(outcomes.parse_prefer(prefer), "header:Prefer", "Prefer", decision)
            if "delay-ms" in decision.params and decision.outcome != "slow":
                decision.delay_ms = decision.params["delay-ms"]
        version, live_scenarios = self.store.settings_state()
        if live_scenarios:
            fields = {"path": request.path, **{k: body.get(k) for k in _MATCH_FIELDS if k != "path"}}
            # A scenario is used (and so consumed) only when it decides something a higher source has not.
            def applies(match: dict[str, Any], spec: dict[str, Any]) -> bool:
                useful = ("outcome" in spec and decision.reason == "server-default") or (
                    "sip" in spec and decision.sip_reason == "server-default")
                return useful and all(fields.get(k) == v for k, v in match.items())

            taken = self.store.take_scenario(applies)
            if taken is not None:
                sid, spec = taken
                outcomes.from_spec(spec, f"scenario:{sid}", "scenario", decision)
        magic = outcomes.MAGIC_NUMBERS.get(body["from_number"])
        if magic:
            outcomes.from_spec(magic, f"magic-number:{body['from_number']}", "from_number", decision)
        policy = self._policy(version)
        if policy:
            self._draw(policy, decision)
        return decision

    def _policy(self, version: int) -> dict[str, Any] | None:
        if version != self._policy_version:
            self._policy_cache, self._policy_version = self.store.policy(), version
        return self._policy_cache

    def _draw(self, policy: dict[str, Any], decision: outcomes.Decision) -> None:
        """One seeded draw per request: the same seed gives the same sequence in any worker."""
        n = self.store.next_draw()
        seed = policy["seed"]
        where = f"seeded:{seed}#{n}"
        http, sip = policy.get("http") or {}, policy.get("sip") or {}
        picked = outcomes.pick(http.get("rates") or {}, outcomes.unit(seed, "http", n))
        if picked and decision.reason == "server-default":
            decision.outcome, decision.reason = picked, where
        picked_sip = outcomes.pick(sip.get("rates") or {}, outcomes.unit(seed, "sip", n))
        if picked_sip and decision.sip_reason == "server-default":
            decision.sip, decision.sip_reason = picked_sip, where
        if http.get("latency") and not decision.delay_ms:
            decision.delay_ms = outcomes.latency_ms(http["latency"], outcomes.unit(seed, "http-latency", n))
        if sip.get("latency") and "sip-answer-ms" not in decision.params:
            decision.params["sip-answer-ms"] = round(
                outcomes.latency_ms(sip["latency"], outcomes.unit(seed, "sip-latency", n)), 3)
            if decision.sip_reason == "server-default":
                decision.sip_reason = where

    def _get_call(self, request: Request, call_id: str) -> _Result:
        self._check_bearer(request)
        call = self.store.get_call(call_id)
        if call is None:
            raise ApiError(404, "not_found", f"No call with id {call_id!r} was prepared on this mock", field="call_id")
        body = {"status": "ok", "response": {"pagination": {"total_records": 1, "limit": 1, "offset": 0},
                                             "calls": [call]}}
        return _Result(Response(200, body), call_id=call_id)

    def _openapi(self, request: Request) -> _Result:
        return _Result(Response(200, contracts.openapi_bundle()))

    # -- admin API --------------------------------------------------------------------
    def _admin_health(self, request: Request) -> _Result:
        body = {"status": "ok", "version": __version__, "uptime_s": round(time.time() - self.started, 3),
                "store": self.store.counters()}
        return _Result(Response(200, body))

    def _admin_calls(self, request: Request) -> _Result:
        limit = _int_arg(request, "limit", 100, 1, 10_000)
        offset = _int_arg(request, "offset", 0, 0, 10**9)
        found, total = self.store.list_calls(status=request.query.get("status"), limit=limit, offset=offset)
        counters = self.store.counters()
        return _Result(Response(200, {"calls": found, "total": total, "evicted": counters["calls_evicted"]}))

    def _admin_sip_ladder(self, request: Request, call_id: str) -> _Result:
        """One call's SIP messages in order: the ladder Synthflow's console draws."""
        entries = self.store.journal(call_id=call_id, kinds=("sip",), limit=10_000)
        ladder = [{k: e.get(k) for k in ("seq", "time", "direction", "transport", "local", "remote", "first_line",
                                         "sip_call_id", "decision", "reason", "raw")} for e in entries]
        call = self.store.get_call(call_id)
        body = {"call_id": call_id, "call_status": call["call_status"] if call else None, "messages": ladder}
        return _Result(Response(200 if call or ladder else 404, body))

    def _admin_journal(self, request: Request) -> _Result:
        q = request.query
        since = _float_arg(request, "since")
        kind = q.get("kind", "http,sip")
        kinds = tuple(k for k in kind.split(",") if k)
        if not kinds or set(kinds) - {"http", "sip", "admin"}:
            raise ApiError(400, "validation_error", "kind must be a comma-separated subset of http,sip,admin",
                           field="kind")
        entries = self.store.journal(
            call_id=q.get("call_id"), path=q.get("path"), kinds=kinds, since=since,
            after_seq=_int_arg(request, "after", None, 0, 2**62),
            limit=_int_arg(request, "limit", 1000, 1, 100_000),
        )
        counters = self.store.counters()
        body = {"entries": entries, "size": counters["journal_size"], "limit": self.store.journal_limit,
                "evicted": counters["journal_evicted"]}
        return _Result(Response(200, body))

    def _admin_prepare_bulk(self, request: Request) -> _Result:
        """Prepare ``count`` calls from one body in one go (load tests pre-register ids this way).

        Body: ``{"count": N, "body": {...prepare_inbound body...}, "outcome": "registered"}``. The
        inner body is validated against the same contract; each call is journaled as a prepare.
        """
        spec = self._json_body(request)
        if not isinstance(spec, dict) or not isinstance(spec.get("count"), int) or not 1 <= spec["count"] <= 100_000:
            raise ApiError(422, "validation_error", "count must be an integer from 1 to 100000", field="/count")
        body = spec.get("body")
        self._validate(body)
        outcome = spec.get("outcome", "registered")
        if outcome not in ("registered", "failed"):
            raise ApiError(422, "validation_error", "outcome must be registered or failed", field="/outcome")
        now_ms = int(time.time() * 1000)
        new_calls = []
        for _ in range(spec["count"]):
            call_id = self.ids.new()
            call = calls.new_call(body, call_id, now_ms,
                                  error_message=FAILED_MESSAGE if outcome == "failed" else None)
            new_calls.append(call)
        self.store.add_calls(new_calls, {"time": time.time(), "kind": "admin", "path": "/_mock/prepare_bulk",
                                         "method": "POST", "outcome": outcome, "reason": "bulk",
                                         "status": 200, "count": len(new_calls)})
        return _Result(Response(200, {"call_ids": [c["synthflow_call_id"] for c in new_calls]}))

    def _admin_scenarios(self, request: Request) -> _Result:
        """Queue "the next N requests matching M get outcome X" (consumed once each), list or clear them."""
        if request.method == "GET":
            return _Result(Response(200, {"scenarios": self.store.scenarios()}))
        if request.method == "DELETE":
            self.store.clear_scenarios()
            return _Result(Response(200, {"cleared": True}))
        spec = self._json_body(request)
        if not isinstance(spec, dict):
            raise ApiError(422, "validation_error", "a scenario is an object", field="/")
        match = spec.pop("match", {})
        if not isinstance(match, dict) or set(match) - set(_MATCH_FIELDS):
            raise ApiError(422, "validation_error", f"match keys must be among {', '.join(_MATCH_FIELDS)}",
                           field="/match")
        times = spec.pop("times", 1)
        if not isinstance(times, int) or not 1 <= times <= 1_000_000:
            raise ApiError(422, "validation_error", "times must be an integer from 1 to 1000000", field="/times")
        if not {"outcome", "sip"} & spec.keys():
            raise ApiError(422, "validation_error", "a scenario names an outcome, a sip plan, or both", field="/")
        outcomes.from_spec(spec, "check", "scenario", outcomes.Decision())  # raises on unknown names
        scenario_id = self.store.add_scenario(match, spec, times)
        return _Result(Response(201, {"id": scenario_id, "match": match, "times": times, **spec}))

    def _admin_policy(self, request: Request) -> _Result:
        """The seeded global policy: outcome rates and latency distributions (PUT replaces, {} clears)."""
        if request.method == "PUT":
            policy = self._json_body(request)
            self.store.set_policy(outcomes.validate_policy(policy) if policy else None)
        return _Result(Response(200, {"policy": self.store.policy()}))

    def _admin_verify(self, request: Request) -> _Result:
        """Count journal entries matching a pattern; when none match, say how the nearest ones differ."""
        pattern = self._json_body(request)
        result = verify.run(self.store, pattern)
        return _Result(Response(200, result))

    def _admin_reset(self, request: Request) -> _Result:
        self.store.reset()
        return _Result(Response(200, {"reset": True}))


def _int_arg(request: Request, name: str, default: int | None, low: int, high: int) -> Any:
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


def _float_arg(request: Request, name: str) -> float | None:
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
