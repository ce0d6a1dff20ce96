"""Outcomes through real clients: requests against the standalone server, a SIP client against the endpoint."""

from __future__ import annotations

import json
import time

import pytest
import requests

from mock_server.core.exchange import Request
from mock_server.sip.message import parse_datagram
from mock_server.testing import start_server
from tests.contract import assert_matches
from tests.data import AUTH, VALID_BODY
from tests.sip_client import SDP, UdpClient, request
from tests.trunk import Trunk, prepare_call

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def live():
    server = start_server("--workers", "2")
    yield server
    server.kill_group()


def post(live, headers=None, body=None, timeout=5.0):
    return requests.post(f"{live.url}/v2/prepare_inbound", json=body or VALID_BODY,
                         headers={**AUTH, **(headers or {})}, timeout=timeout)


@pytest.mark.parametrize("outcome, status, schema", [
    ("registered", 200, "prepare-inbound-registered.schema.json"),
    ("failed", 200, "prepare-inbound-failed.schema.json"),
    ("unauthorized", 401, "error.schema.json"), ("invalid", 422, "error.schema.json"),
    ("rate_limited", 429, "error.schema.json"), ("server_error", 500, "error.schema.json"),
    ("unavailable", 503, "error.schema.json"),
])
def test_each_http_outcome_over_the_wire(live, outcome, status, schema):
    resp = post(live, {"Prefer": f"outcome={outcome}"})
    assert resp.status_code == status
    assert_matches(schema, resp.json())


def test_slow_answer_waits(live):
    t0 = time.monotonic()
    resp = post(live, {"Prefer": "outcome=slow, delay-ms=300"})
    assert resp.status_code == 200 and time.monotonic() - t0 >= 0.3


def test_timeout_outcome_holds_until_the_client_gives_up(live):
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(live, {"Prefer": "outcome=timeout, hold-s=2"}, timeout=0.5)
    assert post(live).status_code == 200  # the server keeps answering others meanwhile


def test_reset_outcome_drops_the_connection(live):
    # The front resets the socket before any byte of an answer, as a dead server would.
    with pytest.raises(requests.exceptions.ConnectionError):
        post(live, {"Prefer": "outcome=reset"})


def test_magic_number_over_the_wire(live):
    resp = post(live, body=dict(VALID_BODY, from_number="+15550100429"))
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "30"


def test_scenario_queue_is_shared_by_all_workers(live):
    requests.post(f"{live.url}/_mock/scenarios", json={"outcome": "unavailable", "times": 10,
                                                       "match": {"model_id": "scenario-model"}}, timeout=5)
    body = dict(VALID_BODY, model_id="scenario-model")
    codes = [post(live, body=body).status_code for _ in range(25)]  # spread over both workers
    assert codes.count(503) == 10 and codes.count(200) == 15


def test_seeded_policy_is_the_same_sequence_across_workers(live):
    def sequence():
        requests.post(f"{live.url}/_mock/reset", json={}, timeout=5)  # resets the draw counter, keeps the policy
        return [post(live).status_code for _ in range(20)]

    requests.put(f"{live.url}/_mock/policy", json={"seed": 5, "http": {"rates": {"server_error": 0.4}}}, timeout=5)
    try:
        first, second = sequence(), sequence()
        assert first == second and 500 in first and 200 in first
    finally:
        requests.put(f"{live.url}/_mock/policy", json={}, timeout=5)


# --- SIP plans, through a SIP client over UDP ---------------------------------------------

@pytest.fixture
def trunk():
    t = Trunk(sip_t1_ms=50)
    client = UdpClient(t.port)
    yield t.backend, t.sip, client
    client.close()
    t.stop()


@pytest.mark.parametrize("plan, code, header", [
    ("busy", 486, None), ("unavailable", 480, None), ("overloaded", 503, "retry-after"), ("decline", 603, None),
])
def test_rejecting_plans(trunk, plan, code, header):
    backend, _sip, client = trunk
    call_id = prepare_call(backend, f"sip={plan}")
    final = client.invite(f"S.{call_id};")[0][-1]
    assert final.status == code
    if header:
        assert final.get(header) == "30"
    assert f"plan {plan}" in final.get("warning")


def test_no_answer_plan_rings_then_408(trunk):
    backend, sip, client = trunk
    call_id = prepare_call(backend, "sip=no_answer, no-answer-ms=200")
    statuses = [m.status for m in client.invite(f"S.{call_id};")[0]]
    assert statuses == [100, 180, 408]
    sip.flush()
    assert backend.store.get_call(call_id)["call_status"] == "no-answer"


def test_ring_forever_until_cancel_then_487(trunk):
    backend, sip, client = trunk
    call_id = prepare_call(backend, "sip=ring_forever")
    invite = request("INVITE", sip.port, client.local_port, xei=f"S.{call_id};", body=SDP)
    client.send(invite)
    assert [client.recv().status, client.recv().status] == [100, 180]
    assert client.silent(0.4)  # nothing more while it rings
    inv = parse_datagram(invite)
    branch = inv.get("via").split("branch=")[1].split(";")[0]
    client.send(request("CANCEL", sip.port, client.local_port, call_id=inv.get("call-id"), branch=branch,
                        from_tag="ft"))
    assert sorted([client.recv().status, client.recv().status]) == [200, 487]


def test_ring_time_before_answer(trunk):
    backend, sip, client = trunk
    call_id = prepare_call(backend, "sip=answer, sip-ring-ms=300")
    t0 = time.monotonic()
    client.send(request("INVITE", sip.port, client.local_port, xei=f"S.{call_id};", body=SDP))
    assert client.recv().status == 100
    assert client.recv().status == 180
    assert time.monotonic() - t0 >= 0.3


def test_hangup_plan_sends_bye(trunk):
    backend, sip, client = trunk
    call_id = prepare_call(backend, "sip=hangup, hangup-after-ms=200")
    msgs, invite = client.invite(f"S.{call_id};")
    client.ack_for(invite, msgs[-1])
    bye = client.recv(3)
    assert bye.method == "BYE" and "agent ended" in bye.get("reason")
    sip.flush()
    call = backend.store.get_call(call_id)
    assert call["call_status"] == "completed" and call["end_call_reason"] == "agent_ended_call"


def test_verify_finds_sip_messages(trunk):
    backend, sip, client = trunk
    call_id = prepare_call(backend, "sip=busy")
    client.invite(f"S.{call_id};")
    sip.flush()
    found = backend.handle(Request("POST", "/_mock/verify", {"content-type": "application/json"},
                                   json.dumps({"kind": "sip", "call_id": call_id, "status": 486}).encode()))
    assert found.body["ok"] and found.body["matched"] == 1
    miss = backend.handle(Request("POST", "/_mock/verify", {"content-type": "application/json"},
                                  json.dumps({"kind": "sip", "call_id": call_id, "status": 200}).encode()))
    assert not miss.body["ok"] and "status: expected 200" in " ".join(miss.body["near_misses"][0]["differences"])
