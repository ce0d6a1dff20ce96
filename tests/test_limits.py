"""Concurrency and call attempts per second (issue #15), enforced under concurrent load.

Over HTTP: a live server with two workers and clients in many threads; exactly N calls are admitted,
the rest get 429 with Synthflow's message and Retry-After. Over SIP: calls prepared in bulk (which
takes no slot) are placed at once; exactly N are answered, the rest get the configured SIP code.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from mock_server.sip.client import SipCaller
from mock_server.testing import start_server
from tests.contract import assert_matches

MODEL = "limited-agent"
BODY = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": MODEL}
AUTH = {"Authorization": "Bearer t"}

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("agents") / "agents.json"
    path.write_text(json.dumps({"agents": {MODEL: {"concurrency": 4}},
                                "workspaces": {"ws-caps": {"caps": 0.2}}}))
    live = start_server("--workers", "2", "--agents", str(path), "--sip-t1-ms", "100", "--quiet")
    yield live
    live.stop()


def prepare(server, **extra):
    return requests.post(f"{server.url}/v2/prepare_inbound", json={**BODY, **extra}, headers=AUTH, timeout=10)


def test_exactly_n_concurrent_prepares_are_admitted_across_workers(server):
    requests.post(f"{server.url}/_mock/reset", json={}, timeout=5)
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda _: prepare(server), range(40)))
    admitted = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(admitted) == 4 and len(refused) == 36, sorted(a.status_code for a in answers)
    detail = refused[0].json()["detail"]
    assert_matches("error.schema.json", refused[0].json())
    assert detail["category"] == "rate_limited" and detail.get("field") == "model_id"
    assert detail["description"].startswith("Concurrency limit exceeded.")
    assert f"agent:{MODEL}: 4 of 4 concurrent calls are live" in detail["description"]
    assert refused[0].headers["Retry-After"] == "5"
    view = requests.get(f"{server.url}/_mock/agents", timeout=5).json()
    assert view["live_calls"] == {f"agent:{MODEL}": 4}
    verdict = requests.post(f"{server.url}/_mock/verify", timeout=5, json={
        "path": "/v2/prepare_inbound", "status": 429, "reason_contains": f"limit agent:{MODEL} concurrency",
        "count": {"eq": 36}}).json()
    assert verdict["ok"], verdict

    # a call that ends gives its slot back: the next prepare is admitted
    call_id = admitted[0].json()["synthflow_call_id"]
    result = SipCaller("127.0.0.1", server.sip_port, t1=0.1).call(
        f"sip:+15551234567@127.0.0.1:{server.sip_port}", [("X-EI", f"S.{call_id};")], hold_s=0.0)
    assert result.answered and result.bye_status == 200
    deadline = time.monotonic() + 5
    while (again := prepare(server)).status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert again.status_code == 200
    assert prepare(server).status_code == 429


def test_caps_counts_attempts_per_second_for_the_workspace(server):
    requests.post(f"{server.url}/_mock/reset", json={}, timeout=5)
    # 0.2 call attempts per second: one attempt in any 5 s
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: prepare(server, model_id="other", workspace_id="ws-caps"), range(16)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [429] * 15, statuses
    refused = next(a for a in answers if a.status_code == 429)
    detail = refused.json()["detail"]
    assert detail["field"] == "workspace_id"
    assert detail["description"].startswith("Rate limit exceeded. Your rate limit per minute is 12. "
                                             "Contact Sales to increase the rate limit.")
    assert refused.headers["Retry-After"] == "5"
    # another workspace is not limited
    assert prepare(server, model_id="other", workspace_id="ws-free").status_code == 200


def test_exactly_n_concurrent_invites_are_answered_and_the_rest_get_the_sip_code(server):
    requests.post(f"{server.url}/_mock/reset", json={}, timeout=5)
    # bulk preparation (an admin tool) takes no slot, so every limit is met at the INVITE
    ids = requests.post(f"{server.url}/_mock/prepare_bulk", timeout=10,
                        json={"count": 10, "body": BODY}).json()["call_ids"]
    caller = SipCaller("127.0.0.1", server.sip_port, t1=0.1, timeout=10)

    def place(call_id):
        return caller.call(f"sip:+15551234567@127.0.0.1:{server.sip_port}", [("X-EI", f"S.{call_id};")], hold_s=1.5)

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(place, ids))
    answered = [r for r in results if r.answered]
    refused = [r for r in results if r.final is not None and r.final.status == 503]
    assert len(answered) == 4 and len(refused) == 6, [(r.final.status if r.final else r.error) for r in results]
    assert all(r.bye_status == 200 for r in answered)
    assert refused[0].final.reason == "Concurrency Limit Reached"
    assert "4 of 4 concurrent calls are live" in refused[0].final.get("warning")
    assert refused[0].final.get("retry-after") == "5"
    # the SIP side writes call events in batches: wait for the last BYE's to land
    deadline = time.monotonic() + 5
    while True:
        calls = requests.get(f"{server.url}/_mock/calls", timeout=5).json()["calls"]
        statuses = sorted(c["call_status"] for c in calls)
        if statuses == ["completed"] * 4 + ["failed"] * 6 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert statuses == ["completed"] * 4 + ["failed"] * 6, statuses
    failed = next(c for c in calls if c["call_status"] == "failed")
    assert failed["error_message"].startswith("Telephony - 503 - Concurrency limit exceeded.")
    sip = requests.post(f"{server.url}/_mock/verify", timeout=5, json={
        "kind": "sip", "status": 503, "reason_contains": f"limit agent:{MODEL} concurrency", "count": {"eq": 6}}).json()
    assert sip["ok"], sip
    # all ended: the slots are free again
    assert requests.get(f"{server.url}/_mock/agents", timeout=5).json()["live_calls"] == {}
