"""Two mock instances sharing one Redis (issue #13): a call prepared on one is answered over SIP by the
other, either one's journal and verify see both, queued scenarios are consumed exactly ``times`` times
across instances, seeded draws stay one sequence, and limits hold across instances."""

from __future__ import annotations

import concurrent.futures
import itertools
import time

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_server import Backend, MockConfig, create_app
from mock_server.sip.message import tag_of
from mock_server.testing import start_server
from tests.sip_client import UdpClient, request

pytestmark = pytest.mark.live
AUTH = {"Authorization": "Bearer test-key"}
BODY = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "redis-agent"}


@pytest.fixture(scope="module")
def shared_url(redis_url):
    return f"{redis_url}?prefix=two-instances"


@pytest.fixture(scope="module")
def pair(shared_url):
    """Instances A and B: separate processes, ports and SIP endpoints, one Redis."""
    args = ("--store", shared_url, "--media", "off", "--sip-ring-ms", "0", "--quiet")
    a = start_server(*args)
    try:
        b = start_server(*args)
    except BaseException:
        a.close()
        raise
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def fresh(pair):
    requests.post(f"{pair[0].url}/_mock/reset", json={}, timeout=5).raise_for_status()
    requests.put(f"{pair[0].url}/_mock/policy", json={}, timeout=5).raise_for_status()
    requests.put(f"{pair[0].url}/_mock/agents", json={}, timeout=5).raise_for_status()
    return pair


def prepare(server, **extra) -> requests.Response:
    return requests.post(f"{server.url}/v2/prepare_inbound", json={**BODY, **extra}, headers=AUTH, timeout=10)


def dial(server, call_id: str, n: int = 0) -> int:
    """INVITE with X-EI, ACK and BYE the answer; the INVITE's final status."""
    client = UdpClient(server.sip_port)
    try:
        answers, invite = client.invite(f"S.{call_id};", call_id=f"redis-{call_id}-{n}",
                                        branch=f"z9hG4bKredis{n}{call_id[:8]}")
        final = answers[-1]
        client.ack_for(invite, final)
        if final.status == 200:
            client.send(request("BYE", server.sip_port, client.local_port, call_id=f"redis-{call_id}-{n}", cseq=2,
                                to_tag=tag_of(final.get("to"))))
            client.recv_until(200)
        return final.status
    finally:
        client.close()


def status_on(server, call_id: str, wanted: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        call = requests.get(f"{server.url}/v2/calls/{call_id}", headers=AUTH, timeout=5).json()
        status = call["response"]["calls"][0]["call_status"]
        if status == wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_prepared_on_a_answered_on_b_and_both_see_the_whole_call(fresh):
    a, b = fresh
    answer = prepare(a)
    assert answer.status_code == 200, answer.text
    call_id = answer.json()["synthflow_call_id"]
    assert dial(b, call_id) == 200
    assert status_on(a, call_id, "completed") == "completed"
    for server in (a, b):
        http = requests.post(f"{server.url}/_mock/verify", json={"path": "/v2/prepare_inbound", "status": 200,
                                                                 "call_id": call_id}, timeout=5).json()
        sip = requests.post(f"{server.url}/_mock/verify", json={"kind": "sip", "call_id": call_id, "status": 200,
                                                                "first_line_contains": "200"}, timeout=5).json()
        assert http["matched"] == 1 and sip["matched"] == 2, (http, sip)  # 200 to the INVITE and to the BYE
        ladder = requests.get(f"{server.url}/_mock/calls/{call_id}/ladder", timeout=5).json()
        assert {"http", "sip"} <= {step["kind"] for step in ladder["steps"]}, ladder


def test_an_id_prepared_nowhere_is_refused_by_both(fresh):
    a, b = fresh
    assert dial(a, "00000000-0000-4000-8000-000000000000") == 404
    assert dial(b, "00000000-0000-4000-8000-000000000001") == 404


@settings(max_examples=8, deadline=None)
@given(times=st.integers(1, 6), clients=st.integers(2, 12), on_b=st.integers(0, 12))
def test_a_queued_scenario_is_consumed_exactly_times_across_instances(pair, times, clients, on_b):
    a, b = pair
    requests.post(f"{a.url}/_mock/reset", json={}, timeout=5).raise_for_status()
    queued = requests.post(f"{b.url}/_mock/scenarios", json={"match": {"model_id": "redis-agent"},
                                                            "outcome": "failed", "times": times}, timeout=5)
    assert queued.status_code in (200, 201), queued.text
    servers = [b if n < on_b else a for n in range(clients + times)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(prepare, servers))
    failed = [r for r in answers if r.json().get("call_status") == "failed"]
    assert len(failed) == times, [r.json().get("call_status") for r in answers]
    left = requests.get(f"{a.url}/_mock/scenarios", timeout=5).json()
    assert [s["remaining"] for s in left["scenarios"]] == [0]


def test_seeded_draws_are_one_sequence_across_instances(fresh):
    a, b = fresh
    policy = {"seed": 7, "http": {"rates": {"failed": 0.5}}}
    assert requests.put(f"{a.url}/_mock/policy", json=policy, timeout=5).status_code == 200
    shared = [prepare(server).json()["call_status"] for server in itertools.islice(itertools.cycle((a, b)), 16)]
    alone = create_app(backend=Backend(MockConfig())).test_client()
    assert alone.put("/_mock/policy", json=policy).status_code == 200
    expected = [alone.post("/v2/prepare_inbound", json=BODY, headers=AUTH).get_json()["call_status"]
                for _ in range(16)]
    assert shared == expected and {"failed", "registered"} <= set(shared)


def test_a_concurrency_limit_holds_across_instances(fresh):
    a, b = fresh
    agents = {"agents": {"redis-agent": {"concurrency": 3}}}
    assert requests.put(f"{b.url}/_mock/agents", json=agents, timeout=5).status_code == 200
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(prepare, [a, b] * 5))
    assert sorted(r.status_code for r in answers) == [200] * 3 + [429] * 7
    counts = requests.get(f"{a.url}/_mock/agents", timeout=5).json()
    assert counts["live_calls"]["agent:redis-agent"] == 3, counts


def test_serve_names_a_redis_it_cannot_reach(tmp_path):
    from mock_server.testing import free_port

    with pytest.raises(RuntimeError, match=r"cannot use the Redis store redis://:\*\*\*@127\.0\.0\.1:\d+/0"):
        start_server("--store", f"redis://:hunter2@127.0.0.1:{free_port()}/0", ready_timeout=10)


def test_a_redis_that_goes_away_is_named_in_503s_and_the_mock_recovers_when_it_returns():
    from urllib.parse import urlsplit

    from tests.redis_server import running_redis

    with running_redis() as url:
        port = urlsplit(url).port
        server = start_server("--store", url, "--media", "off", "--quiet")
    try:  # Redis is gone now
        refused = prepare(server)
        why = refused.json()["detail"]["description"]
        assert refused.status_code == 503 and "store refused" in why and "ConnectionError" in why, refused.text
        client = UdpClient(server.sip_port)
        answers, _ = client.invite("S.00000000-0000-4000-8000-000000000000;")
        client.close()
        assert answers[-1].status == 503 and answers[-1].reason == "Mock Store Unavailable"
        assert "could not be read" in (answers[-1].get("warning") or "")
        health = requests.get(f"{server.url}/_mock/health", timeout=5).json()
        assert health["status"] == "degraded" and "error" in health["store"]
        with running_redis(port=port):
            deadline = time.monotonic() + 10
            while (answer := prepare(server)).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert answer.status_code == 200, answer.text
            assert dial(server, answer.json()["synthflow_call_id"]) == 200
    finally:
        server.close()
