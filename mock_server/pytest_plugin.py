"""pytest plugin (entry point ``pytest11``): fixtures that feel native to pytest.

``synthflow_mock``
    The in-process mock: ``requests`` to ``https://api.synthflow.ai`` are answered by
    the core, no server. Configure it by overriding the ``synthflow_mock_config`` fixture.
``synthflow_server``
    A live ``synthflow-mock serve`` (HTTP and SIP on free loopback ports), one per test
    session and pytest-xdist worker, reset before each test. Extra flags: override the
    session fixture ``synthflow_server_args``.

Both give ``assert_prepared(**fields)``; the live server also ``assert_invite(call_id)``,
which waits for an INVITE with a valid X-EI for that call and, when none came, shows
what did arrive, and ``assert_webhook(call_id, status=...)``, which does the same for
the post-call webhook (``set_agents(...)`` says where webhooks go).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from mock_server import lint, twilio_sim, xei
from mock_server.core.config import MockConfig
from mock_server.core.exchange import Request
from mock_server.inprocess import InProcessMock
from mock_server.testing import LiveServer, serve_app, start_server


def _assert_prepared(calls: list[dict[str, Any]], fields: dict[str, Any],
                     refused: list[dict[str, Any]]) -> dict[str, Any]:
    __tracebackhide__ = True
    mapping = {"from_number": "lead_phone_number", "to_number": "agent_phone_number"}
    for call in calls:
        if all(call.get(mapping.get(k, k)) == v for k, v in fields.items()):
            return call
    seen = [{mapping.get(k, k): c.get(mapping.get(k, k)) for k in fields} for c in calls[-5:]]
    message = f"no call was prepared with {fields}; the last {len(seen)} prepared: {seen}"
    if refused:
        message += "; the mock refused these prepare_inbound requests: " + "; ".join(
            f"{e.get('status')} {e.get('error')}" + (f" ({twilio_sim.WHY[e['status']]})" if e.get("status") in
                                                     twilio_sim.WHY else "") for e in refused[-5:])
    raise AssertionError(message)


class _Helpers:
    """What both fixtures offer over the admin API: outcomes to queue, journal checks, TwiML checks."""

    calls: Callable[..., list[dict[str, Any]]]
    """Prepared calls, oldest first (each fixture reads them its own way)."""

    def _admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raise NotImplementedError

    def assert_prepared(self, **fields: Any) -> dict[str, Any]:
        """The first prepared call whose fields match (``from_number``/``to_number`` as in the request)."""
        __tracebackhide__ = True
        refused = [e for e in self._journal_of_prepares() if (e.get("status") or 0) >= 400]
        return _assert_prepared(self.calls(), fields, refused)

    def _journal_of_prepares(self) -> list[dict[str, Any]]:
        status, answer = self._admin("GET", "/_mock/journal?path=/v2/prepare_inbound&limit=1000")
        return answer.get("entries", []) if status == 200 else []

    def queue_outcome(self, outcome: str | None = None, *, sip: str | None = None, times: int = 1,
                      match: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
        """The next ``times`` prepares (matching ``match``) get ``outcome`` and/or SIP plan ``sip``;
        ``params`` as in the scenario contract, with ``_`` for ``-`` (``retry_after=5``, ``hangup_after_ms=200``)."""
        __tracebackhide__ = True
        body: dict[str, Any] = {"times": times, **{k.replace("_", "-"): v for k, v in params.items()}}
        if outcome:
            body["outcome"] = outcome
        if sip:
            body["sip"] = sip
        if match:
            body["match"] = match
        status, answer = self._admin("POST", "/_mock/scenarios", body)
        if status != 201:
            raise AssertionError(f"the mock refused the scenario {body}: {answer}")
        return answer

    def verify(self, **pattern: Any) -> dict[str, Any]:
        """``POST /_mock/verify``: how many journal entries match, and the nearest misses when none do."""
        return self._admin("POST", "/_mock/verify", pattern)[1]

    def assert_twiml(self, twiml: str) -> str:
        """Check a TwiML answer as Twilio and Synthflow would read it: the ``<Dial><Sip>`` lint (a dropped
        ``%3B``, a wrong port or host, a header Twilio refuses) and an X-EI call id this mock prepared.
        Returns the call id."""
        __tracebackhide__ = True
        diagnostics = lint.lint_twiml(twiml, lint.Target(hosts=(*lint.SYNTHFLOW_HOSTS, "127.0.0.1", "localhost")))
        errors = [f"  {d.code}: {d.message} (hint: {d.hint})" for d in diagnostics if d.severity == "error"]
        if errors:
            raise AssertionError("the TwiML would not reach the prepared call:\n" + "\n".join(errors) +
                                 f"\nTwiML: {twiml}")
        uri = twilio_sim.sip_uri(twiml)
        values = [v for n, v in xei.uri_headers(uri or "") if n.lower() == "x-ei"]
        call_id = xei.parse(values if len(values) > 1 else (values[0] if values else [])).call_id
        prepared = [c["synthflow_call_id"] for c in self.calls()]
        if call_id not in prepared:
            raise AssertionError(f"the TwiML's X-EI names call {call_id!r}, which this mock never prepared "
                                 f"(prepared: {prepared[-5:]}); was prepare_inbound skipped, or sent elsewhere?")
        return call_id


class InProcessFixture(InProcessMock, _Helpers):
    def _admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        path, _, query = path.partition("?")
        response = self.backend.handle(Request(method, path, {"content-type": "application/json"}, data,
                                               query=dict(urllib.parse.parse_qsl(query))))
        answer = response.body
        return response.status, json.loads(answer) if isinstance(answer, (bytes, str)) else answer


class LiveMock(_Helpers):
    """The live server as a test sees it."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.url = server.url
        self.sip_host = "127.0.0.1"
        self.sip_port = server.sip_port

    def sip_uri(self, number: str, call_id: str) -> str:
        return self.server.sip_uri(number, call_id)

    def reset(self) -> None:
        requests.post(f"{self.url}/_mock/reset", json={}, timeout=5).raise_for_status()

    def prepare(self, body: dict[str, Any], prefer: str | None = None, token: str = "test") -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}", **({"Prefer": prefer} if prefer else {})}
        resp = requests.post(f"{self.url}/v2/prepare_inbound", json=body, headers=headers, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def _admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        resp = requests.request(method, f"{self.url}{path}", json=body if method != "GET" else None, timeout=10)
        return resp.status_code, resp.json()

    def calls(self) -> list[dict[str, Any]]:
        return list(reversed(requests.get(f"{self.url}/_mock/calls", params={"limit": 10_000},
                                          timeout=5).json()["calls"]))

    def journal(self, **params: Any) -> list[dict[str, Any]]:
        return requests.get(f"{self.url}/_mock/journal", params=params, timeout=5).json()["entries"]

    def simulate_call(self, app_or_url: Any, from_number: str = "+15075785607", to_number: str = "+15551234567",
                      *, path: str = "/voice", **options: Any) -> twilio_sim.Report:
        """Play Twilio against your app (a URL, or a WSGI/ASGI app served here on a free port) with this
        server as Synthflow; fail with the simulator's whole step report when any step fails.
        Point your app at ``self.url`` first (``monkeypatch.setenv("SYNTHFLOW_BASE_URL", ...)``)."""
        __tracebackhide__ = True
        with serve_app(app_or_url) as base:
            url = base if isinstance(app_or_url, str) else base + path
            report = twilio_sim.simulate_call(url, from_number, to_number, mock_url=self.url,
                                              sip_target=(self.sip_host, self.sip_port), **options)
        if not report.ok:
            raise AssertionError("the simulated call failed:\n" + report.render())
        return report

    def assert_invite(self, call_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for an INVITE whose X-EI names ``call_id`` validly; fail with what arrived instead."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while True:
            invites = [e for e in self.journal(kind="sip") if e.get("direction") == "in"
                       and (e.get("first_line") or "").startswith("INVITE ")]
            for entry in invites:
                if entry.get("call_id") == call_id:
                    return entry
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        lines = []
        for entry in invites[-5:]:
            values = [line.split(":", 1)[1].strip() for line in (entry.get("raw") or "").splitlines()
                      if line.lower().startswith("x-ei")]
            problems = "; ".join(d.message for d in xei.parse(values).errors) if values else "no X-EI header"
            lines.append(f"  {entry.get('first_line')} | X-EI {values or '-'} | {entry.get('decision')}"
                         f"{' | ' + problems if problems else ''}")
        arrived = "\n".join(lines) or "  (no INVITE reached the SIP endpoint)"
        raise AssertionError(f"no INVITE with a valid X-EI for call {call_id} within {timeout:g} s; "
                             f"INVITEs that arrived:\n{arrived}")


    def set_agents(self, document: dict[str, Any]) -> dict[str, Any]:
        """Replace the agents document (webhook URLs and secret, pre-call actions, limits); ``{}`` clears it."""
        resp = requests.put(f"{self.url}/_mock/agents", json=document, timeout=5)
        resp.raise_for_status()
        return resp.json()

    def webhooks(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """Every webhook attempt the mock made (for one call), oldest first."""
        params = {"kind": "webhook", **({"call_id": call_id} if call_id else {})}
        return self.journal(**params)

    def assert_webhook(self, call_id: str, status: str | None = None, *, event: str = "post_call",
                       timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the mock delivered ``event`` for ``call_id`` and the receiver accepted it (2xx),
        with the payload's ``status`` when given; fail with every attempt that was made instead."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while True:
            attempts = [e for e in self.webhooks(call_id) if e.get("event") == event]
            for entry in attempts:
                if entry.get("outcome") == "delivered" and (status is None or _payload_status(entry) == status):
                    return entry
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        lines = [f"  #{e.get('attempt')} {e.get('method')} {e.get('url')} -> "
                 f"{e.get('status') or e.get('error')} (payload status {_payload_status(e)!r})" for e in attempts]
        arrived = "\n".join(lines) or "  (none: did the call end, and does its agent have an external_webhook_url?)"
        want = f" with status {status!r}" if status else ""
        raise AssertionError(f"no {event} webhook{want} for call {call_id} was accepted within {timeout:g} s; "
                             f"attempts:\n{arrived}")


def _payload_status(entry: dict[str, Any]) -> str | None:
    try:
        return json.loads(entry.get("body") or "{}").get("status")
    except ValueError:
        return None


@pytest.fixture
def synthflow_mock_config() -> MockConfig:
    """Override to configure the in-process mock."""
    return MockConfig()


@pytest.fixture
def synthflow_mock(synthflow_mock_config: MockConfig) -> Iterator[InProcessFixture]:
    with InProcessFixture(synthflow_mock_config) as mock:
        yield mock


@pytest.fixture(scope="session")
def synthflow_server_args() -> list[str]:
    """Override (session scope) to pass flags to ``synthflow-mock serve``."""
    return ["--workers", "1", "--sip-t1-ms", "100"]


@pytest.fixture(scope="session")
def _synthflow_live_server(synthflow_server_args: list[str]) -> Iterator[LiveServer]:
    server = start_server(*synthflow_server_args)
    yield server
    server.close()


@pytest.fixture
def synthflow_server(_synthflow_live_server: LiveServer) -> LiveMock:
    mock = LiveMock(_synthflow_live_server)
    mock.reset()
    return mock
