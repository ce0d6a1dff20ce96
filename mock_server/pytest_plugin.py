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
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from mock_server import xei
from mock_server.core.config import MockConfig
from mock_server.inprocess import InProcessMock
from mock_server.testing import LiveServer, start_server


def _assert_prepared(calls: list[dict[str, Any]], fields: dict[str, Any]) -> dict[str, Any]:
    mapping = {"from_number": "lead_phone_number", "to_number": "agent_phone_number"}
    for call in calls:
        if all(call.get(mapping.get(k, k)) == v for k, v in fields.items()):
            return call
    seen = [{mapping.get(k, k): c.get(mapping.get(k, k)) for k in fields} for c in calls[-5:]]
    raise AssertionError(f"no call was prepared with {fields}; the last {len(seen)} prepared: {seen}")


class InProcessFixture(InProcessMock):
    def assert_prepared(self, **fields: Any) -> dict[str, Any]:
        """The first prepared call whose fields match (``from_number``/``to_number`` as in the request)."""
        return _assert_prepared(self.calls(), fields)


class LiveMock:
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

    def calls(self) -> list[dict[str, Any]]:
        return list(reversed(requests.get(f"{self.url}/_mock/calls", params={"limit": 10_000},
                                          timeout=5).json()["calls"]))

    def journal(self, **params: Any) -> list[dict[str, Any]]:
        return requests.get(f"{self.url}/_mock/journal", params=params, timeout=5).json()["entries"]

    def verify(self, **pattern: Any) -> dict[str, Any]:
        return requests.post(f"{self.url}/_mock/verify", json=pattern, timeout=5).json()

    def assert_prepared(self, **fields: Any) -> dict[str, Any]:
        return _assert_prepared(self.calls(), fields)

    def assert_invite(self, call_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for an INVITE whose X-EI names ``call_id`` validly; fail with what arrived instead."""
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
    server.kill_group()


@pytest.fixture
def synthflow_server(_synthflow_live_server: LiveServer) -> LiveMock:
    mock = LiveMock(_synthflow_live_server)
    mock.reset()
    return mock
