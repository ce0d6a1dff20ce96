"""A backend and its SIP endpoint on a free port, sharing one in-memory store (for SIP tests)."""

from __future__ import annotations

import json

from mock_server import MockConfig
from mock_server.core.backend import Backend
from mock_server.core.exchange import Request
from mock_server.sip.runner import SipThread
from tests.data import VALID_BODY


def prepare_call(backend: Backend, prefer: str = "outcome=registered") -> str:
    """Prepare a call through the core (as over HTTP) and return its synthflow_call_id."""
    headers = {"authorization": "Bearer t", "content-type": "application/json", "prefer": prefer}
    resp = backend.handle(Request("POST", "/v2/prepare_inbound", headers, json.dumps(VALID_BODY).encode()))
    return json.loads(resp.body)["synthflow_call_id"]


class Trunk:
    def __init__(self, **config):
        config.setdefault("sip_t1_ms", 40)
        self.config = MockConfig(sip_port=0, **config)
        self.backend = Backend(self.config)
        self.sip = SipThread(self.backend.store, self.config, port=0).start()
        self.port = self.sip.port

    def prepare(self, outcome: str = "registered") -> str:
        return prepare_call(self.backend, f"outcome={outcome}")

    def call(self, call_id: str) -> dict:
        """The call with every SIP event so far folded in."""
        self.sip.flush()
        call = self.backend.store.get_call(call_id)
        assert call is not None, f"no call {call_id}"
        return call

    def status(self, call_id: str) -> str:
        return self.call(call_id)["call_status"]

    def journal(self) -> list[dict]:
        self.sip.flush()
        return self.backend.store.journal(kinds=("sip",), limit=100_000)

    def ladder(self, call_id: str) -> list[str]:
        self.sip.flush()
        resp = self.backend.handle(Request("GET", f"/_mock/calls/{call_id}/sip", {}))
        return [m["direction"] + " " + m["first_line"].split(" sip:")[0] for m in resp.body["messages"]]

    def stop(self) -> None:
        self.sip.stop()
