"""In-process doors (requests, httpx) and the live server give the same answers for the same inputs (one core)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mock_server import synthflow_mock

pytestmark = pytest.mark.live
E164 = st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True)
SCALAR = st.one_of(st.text(max_size=10), st.integers(-1000, 1000), st.booleans(), st.none())
VALID = st.fixed_dictionaries(
    {"from_number": E164, "to_number": E164, "model_id": st.text(min_size=1, max_size=20)},
    optional={"workspace_id": st.one_of(st.none(), st.text(max_size=10)),
              "custom_variables": st.dictionaries(st.text(min_size=1, max_size=8), SCALAR, max_size=4)})
ANYTHING = st.dictionaries(st.sampled_from(["from_number", "to_number", "model_id", "extra"]),
                           st.one_of(st.text(max_size=8), st.integers()), max_size=4)
BODIES = st.one_of(VALID, ANYTHING)
PREFER = st.sampled_from([None, "outcome=registered", "outcome=failed", "outcome=rate_limited",
                          "outcome=invalid", "outcome=server_error", "sip=busy"])


def normalise(status: int, body: Any) -> tuple[int, Any]:
    """Drop what differs by nature between two answers: ids, times, request ids."""
    if isinstance(body, dict) and "synthflow_call_id" in body:
        body = {k: v for k, v in body.items() if k not in ("synthflow_call_id", "start_time", "timeline")}
    if isinstance(body, dict) and "detail" in body:
        body = {"detail": {k: v for k, v in body["detail"].items() if k != "request_id"}}
    return status, body


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(BODIES, PREFER)
def test_in_process_and_live_answers_are_identical(_synthflow_live_server, body, prefer):
    headers = {"Authorization": "Bearer same-token", **({"Prefer": prefer} if prefer else {})}
    live = requests.post(f"{_synthflow_live_server.url}/v2/prepare_inbound", json=body, headers=headers, timeout=5)
    with synthflow_mock():
        local = requests.post("https://api.synthflow.ai/v2/prepare_inbound", json=body, headers=headers, timeout=5)
        via_httpx = httpx.post("https://api.synthflow.ai/v2/prepare_inbound", json=body, headers=headers, timeout=5)
    assert normalise(live.status_code, live.json()) == normalise(local.status_code, local.json())
    assert normalise(live.status_code, live.json()) == normalise(via_httpx.status_code, via_httpx.json())
    assert live.headers.get("Retry-After") == local.headers.get("Retry-After") == via_httpx.headers.get("Retry-After")
