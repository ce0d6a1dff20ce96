"""The HTTP semantics of the mock, free of any web framework.

:meth:`Backend.handle` takes a transport-neutral :class:`~mock_server.core.exchange.Request`
and returns a :class:`~mock_server.core.exchange.Response`. The Flask app and the
in-process door both route through the one table in ``routes.py``, so they cannot
disagree. Handlers live in ``api.py`` (Synthflow's API) and ``admin.py`` (``/_mock/``);
this module routes, runs the handler, and journals every request with the outcome
chosen and why.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound

from mock_server import metrics
from mock_server.agents.book import BookCache
from mock_server.core import calls, checks, contracts, entropy, outcomes
from mock_server.core.config import MockConfig
from mock_server.core.errors import ApiError
from mock_server.core.exchange import Request, Response, Result, Write
from mock_server.core.health import Health
from mock_server.core.journal import http_entry
from mock_server.core.routes import Route, url_map
from mock_server.core.store import Store, store_errors

log = logging.getLogger("synthflow_mock")

_UNREADABLE = {408: ("request_timeout", None), 414: ("uri_too_long", "url"), 417: ("expectation_failed", "expect"),
               431: ("header_fields_too_large", None)}
"""Error category and field of an answer the front gives a request it could not read, by status (others:
bad_request; no field: the part of the request that was being read)."""


class Backend:
    """Calls, journal and HTTP behaviour shared by every door."""

    def __init__(self, config: MockConfig | None = None, store: Store | None = None) -> None:
        self.config = config or MockConfig()
        self.store = store or Store.for_config(self.config)
        self.ids = calls.IdSource(self.config.seed, self.store.next_id_number)
        self.started = time.time()
        self.url_map = url_map()
        self.request_validator = contracts.fast_validator(
            "prepare-inbound-request.schema.json", self.config.allow_extra_fields)
        self.health = Health(f"the HTTP side (pid {os.getpid()})", board=self.store.shared)
        self.books = BookCache(self.store)
        """The agents document (webhooks, pre-call actions, limits), re-read when it changes."""
        self._store_errors = store_errors()
        self._validators: dict[str, Any] = {}
        self._policy_version = -1
        self._policy_cache: dict[str, Any] | None = None
        if self.config.policy:
            self.store.set_policy(outcomes.validate_policy(self.config.policy), only_if_unset=True)
        if self.config.agents:
            self.store.set_agents(self.config.agents, only_if_unset=True)

    def validator(self, name: str) -> Any:
        """A compiled contract from ``contracts/`` (compiled once per backend)."""
        found = self._validators.get(name)
        if found is None:
            found = self._validators[name] = contracts.fast_validator(name)
        return found

    # -- entry points ---------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """Route and answer one request (the in-process door's entry point)."""
        adapter = self.url_map.bind("mock")
        try:
            route, args = adapter.match(request.path, request.method)
        except MethodNotAllowed as exc:
            return self.method_not_allowed(request, exc.valid_methods or [])
        except NotFound:
            return self.not_found(request)
        return self.dispatch(route, request, args)

    def dispatch(self, route: Route, request: Request, args: dict[str, Any]) -> Response:
        """Answer a routed request and journal it (the Flask views' entry point)."""
        request_id = entropy.random_hex(12)
        try:
            if route.is_admin:
                checks.admin(self.config, request, token=route.needs_token)
            result = route.handler(self, request, **args)
            error = None
        except ApiError as exc:
            result = Result(Response(exc.status, exc.body(request_id), dict(exc.headers), exc.delay_s),
                            exc.outcome, exc.reason)
            error = exc.category
        except self._store_errors as exc:  # the store refused (a full disk, a locked file): honest, not a bug
            self.health.failed(exc, refused=1)
            err = ApiError(503, "service_unavailable", f"The mock's store refused this request "
                           f"({type(exc).__name__}: {exc}); GET /_mock/health says more", headers={"Retry-After": "1"})
            result = Result(Response(503, err.body(request_id), dict(err.headers)))
            error = err.category
        except Exception as exc:  # a bug: still a JSON answer, journaled, one log line, no traceback
            return self.crashed(request, exc, request_id, kind=route.kind, route_rule=route.rule)
        return self._finish(request, request_id, result, error, kind=route.kind, route_rule=route.rule)

    def crashed(self, request: Request, exc: Exception, request_id: str | None = None, kind: str = "http",
                route_rule: str = "unrouted") -> Response:
        """The answer to a request the mock failed on: a JSON 500 naming the request id, journaled."""
        request_id = request_id or entropy.random_hex(12)
        log.error("internal error on %s %s (request %s): %s: %s", request.method, request.path, request_id,
                  type(exc).__name__, exc)
        err = ApiError(500, "internal_error",
                       f"Internal error in the mock: {type(exc).__name__}; please report it with request id "
                       f"{request_id}")
        return self._finish(request, request_id, Result(Response(500, err.body(request_id))), err.category, kind,
                            route_rule)

    def not_found(self, request: Request) -> Response:
        hint = "; the mock's web ladder is at /_mock/ui" if request.path in ("/", "/_mock", "/ui") else ""
        return self._unrouted(request, ApiError(404, "not_found",
                                                f"No route for {request.method} {request.path}{hint}"))

    def method_not_allowed(self, request: Request, allowed: list[str]) -> Response:
        allowed = sorted(set(allowed) - {"HEAD", "OPTIONS"}) or sorted(allowed)
        err = ApiError(405, "method_not_allowed",
                       f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}",
                       headers={"Allow": ", ".join(allowed)})
        return self._unrouted(request, err)

    def unreadable(self, request: Request, status: int, why: str, *, phase: str) -> Response:
        """The answer to a request the front could not read whole (408 after a read timeout, 400 for bad
        HTTP, 414/431 for a line or headers too long, 417 for an expectation it does not meet), journaled
        with what did arrive."""
        category, field = _UNREADABLE.get(status, ("bad_request", None))
        return self._unrouted(request, ApiError(status, category, why, field=field or f"request {phase}"))

    def _unrouted(self, request: Request, err: ApiError) -> Response:
        request_id = entropy.random_hex(12)
        result = Result(Response(err.status, err.body(request_id), dict(err.headers)))
        return self._finish(request, request_id, result, err.category, kind="http")

    def _finish(self, request: Request, request_id: str, result: Result, error: str | None, kind: str,
                route_rule: str = "unrouted") -> Response:
        response = result.response
        response.headers["X-Request-Id"] = request_id
        response.headers["X-Content-Type-Options"] = "nosniff"
        entry = http_entry(
            time=time.time(), request_id=request_id, method=request.method, path=request.path,
            query=request.query, headers=request.headers, body=request.body,
            body_limit=self.config.journal_body_limit, remote=request.remote, status=response.status,
            outcome=result.outcome, reason=result.reason, call_id=result.call_id, error=error,
            salt=self.config.redaction_salt,
        )
        entry["kind"] = kind
        if request.headers.get("x-mock-internal") == "readiness" and checks.is_loopback(request.remote):
            return response  # the supervisor's own probe: kept out of the journal and the console
        entry["route"] = route_rule
        metrics.labeled(metrics.HTTP_REQUESTS, route_rule, request.method, str(response.status or response.drop),
                        result.outcome or "none", metrics.source_of(result.reason)).inc()
        call_json = response.body_bytes() if result.new_call is not None else None
        write = Write(entry, result.new_call, result.plan, call_json)
        if request.writes is not None:
            request.writes.append(write)  # the door commits it with others before it answers
            return response
        try:
            self.store.write([write])
        except Exception as exc:
            return self.unrecorded(response, exc, stateful=write.call is not None)
        self.health.recovered()
        return response

    def unrecorded(self, response: Response, exc: Exception, *, stateful: bool) -> Response:
        """What to answer when a request's record could not be written.

        An answer that created state (a prepared call) is refused with a 503 naming the cause: the
        mock never answers 2xx for something it did not record. Any other answer still goes out
        (health and the admin reads keep working on a full disk), and its lost entry is counted.
        """
        request_id = response.headers.get("X-Request-Id", "")
        if not stateful:
            self.health.failed(exc, unrecorded=1)
            response.headers["X-Mock-Journal"] = "not recorded"
            return response
        self.health.failed(exc, refused=1)
        err = ApiError(503, "service_unavailable",
                       f"The mock could not record this request ({type(exc).__name__}: {exc}), so it refuses it "
                       "rather than answer without a record; GET /_mock/health says more", headers={"Retry-After": "1"})
        return Response(503, err.body(request_id), {**err.headers, "X-Request-Id": request_id,
                                                    "X-Content-Type-Options": "nosniff"})

    # -- the outcome engine's inputs --------------------------------------------------
    def decide(self, request: Request, body: dict[str, Any]) -> outcomes.Decision:
        """The outcome of one prepare_inbound (``outcomes.decide``) over this backend's store."""
        version, live_scenarios = self.store.settings_state()
        fields = {"path": request.path, **{k: body.get(k) for k in outcomes.MATCH_FIELDS if k != "path"}}
        decision = outcomes.decide(default_outcome=self.config.default_outcome, prefer=request.headers.get("prefer"),
                                   fields=fields, scenarios_live=bool(live_scenarios),
                                   take_scenario=self.store.take_scenario, policy=self._policy(version),
                                   next_draw=self.store.next_draw)
        decision.settings_version = version
        return decision

    def _policy(self, version: int) -> dict[str, Any] | None:
        if version != self._policy_version:
            self._policy_cache, self._policy_version = self.store.policy(), version
        return self._policy_cache
