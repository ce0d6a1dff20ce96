"""The outcome engine in-process: precedence, scenarios, seeded policy, verification (issue: outcomes and faults)."""

from __future__ import annotations

import json
import math
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_server import MockConfig
from mock_server.core import outcomes
from mock_server.core.backend import Backend
from mock_server.core.exchange import Request
from tests.contract import assert_error, assert_matches
from tests.data import AUTH, VALID_BODY


def prepare(client, body=None, headers=None):
    return client.post("/v2/prepare_inbound", json=body or VALID_BODY, headers={**AUTH, **(headers or {})})


def last_entry(client):
    return client.get("/_mock/journal?path=/v2/prepare_inbound").json["entries"][-1]


@pytest.mark.parametrize("outcome, status, category", [
    ("unauthorized", 401, "unauthorized"), ("invalid", 422, "validation_error"),
    ("rate_limited", 429, "rate_limited"), ("server_error", 500, "internal_error"),
    ("unavailable", 503, "service_unavailable"),
])
def test_error_outcomes_by_header(client, outcome, status, category):
    resp = prepare(client, headers={"Prefer": f"outcome={outcome}"})
    detail = assert_error(resp, status, category)
    assert outcome in detail["description"]
    if status in (429, 503):
        assert resp.headers["Retry-After"] == "30"
    entry = last_entry(client)
    assert (entry["outcome"], entry["reason"]) == (outcome, "header:Prefer")


def test_retry_after_is_settable(client):
    resp = prepare(client, headers={"Prefer": "outcome=rate_limited, retry-after=7"})
    assert resp.headers["Retry-After"] == "7"


@pytest.mark.parametrize("number, outcome, status", [
    ("+15550100100", "failed", 200), ("+15550100401", "unauthorized", 401), ("+15550100422", "invalid", 422),
    ("+15550100429", "rate_limited", 429), ("+15550100500", "server_error", 500),
    ("+15550100503", "unavailable", 503),
])
def test_magic_caller_numbers(client, number, outcome, status):
    resp = prepare(client, dict(VALID_BODY, from_number=number))
    assert resp.status_code == status
    schema = "prepare-inbound-failed.schema.json" if outcome == "failed" else "error.schema.json"
    assert_matches(schema, resp.json)
    assert last_entry(client)["reason"] == f"magic-number:{number}"


@pytest.mark.parametrize("number, plan", [
    ("+15550101486", "busy"), ("+15550101603", "decline"), ("+15550101408", "no_answer"),
    ("+15550101299", "hangup"),
])
def test_magic_numbers_choose_the_sip_plan(make_client, number, plan):
    client, backend = make_client()
    call_id = prepare(client, dict(VALID_BODY, from_number=number)).json["synthflow_call_id"]
    status, stored = backend.store.status_and_plan(call_id)
    assert status == "registered" and stored["plan"] == plan
    assert stored["reason"] == f"magic-number:{number}"


def test_unknown_names_are_refused(client):
    assert "sip=" in assert_error(prepare(client, headers={"Prefer": "sip=explode"}), 400,
                                  "validation_error")["description"]
    assert_error(prepare(client, headers={"Prefer": "outcome=slow, delay-ms=-5"}), 400, "validation_error")


def test_header_scripts_prepare_ok_then_invite_declined(make_client):
    client, backend = make_client()
    resp = prepare(client, headers={"Prefer": "sip=decline"})
    assert resp.status_code == 200 and resp.json["call_status"] == "registered"
    assert backend.store.status_and_plan(resp.json["synthflow_call_id"])[1]["plan"] == "decline"
    assert last_entry(client)["reason"] == "server-default; sip=decline (header:Prefer)"


def test_precedence_header_scenario_magic_policy_default(make_client):
    client, _ = make_client(policy={"seed": 1, "http": {"rates": {"server_error": 1.0}}})
    magic = dict(VALID_BODY, from_number="+15550100429")
    client.post("/_mock/scenarios", json={"outcome": "unavailable", "times": 2})
    got = [
        (prepare(client, magic, {"Prefer": "outcome=invalid"}).status_code, last_entry(client)["reason"]),
        (prepare(client, magic).status_code, last_entry(client)["reason"]),  # scenario beats magic
        (prepare(client, magic).status_code, last_entry(client)["reason"]),  # scenario's second use
        (prepare(client, magic).status_code, last_entry(client)["reason"]),  # magic number beats policy
        (prepare(client).status_code, last_entry(client)["reason"]),  # seeded policy beats default
    ]
    assert [g[0] for g in got] == [422, 503, 503, 429, 500]
    assert got[0][1] == "header:Prefer" and got[1][1].startswith("scenario:")
    assert got[3][1] == "magic-number:+15550100429" and got[4][1].startswith("seeded:1#")
    client.put("/_mock/policy", json={})
    prepare(client)
    assert last_entry(client)["reason"] == "server-default"


def test_scenarios_match_and_are_consumed_once(client):
    created = client.post("/_mock/scenarios", json={"match": {"to_number": "+15550009999"}, "outcome": "failed",
                                                    "times": 2})
    assert created.status_code == 201
    other = prepare(client)
    assert other.json["call_status"] == "registered"  # does not match: not consumed
    body = dict(VALID_BODY, to_number="+15550009999")
    assert [prepare(client, body).json["call_status"] for _ in range(3)] == ["failed", "failed", "registered"]
    listed = client.get("/_mock/scenarios").json["scenarios"]
    assert listed[0]["remaining"] == 0 and listed[0]["times"] == 2
    assert client.delete("/_mock/scenarios", json={}).json == {"cleared": True}


@pytest.mark.parametrize("spec", [{"outcome": "nope"}, {"times": 0, "outcome": "failed"}, {"match": {"x": 1},
                                                                                            "outcome": "failed"},
                                  {"times": 3}])
def test_bad_scenarios_are_refused(client, spec):
    # A scenario body breaks its contract (admin-scenario.schema.json): 422, like any body; only the
    # Prefer header's mistakes are 400.
    detail = assert_error(client.post("/_mock/scenarios", json=spec), 422, "validation_error")
    assert detail["errors"] and detail["field"] == detail["errors"][0]["pointer"]


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.integers(0, 6))
def test_queued_outcomes_are_consumed_exactly_once_under_concurrency(tmp_path_factory, uses, threads, extra):
    path = os.path.join(tmp_path_factory.mktemp("store"), "state.sqlite3")
    config = MockConfig(store_path=path)
    backends = [Backend(config) for _ in range(2)]  # two "workers" sharing one file store
    client_body = json.dumps(VALID_BODY).encode()
    headers = {"authorization": "Bearer t", "content-type": "application/json"}
    backends[0].handle(Request("POST", "/_mock/scenarios", {"content-type": "application/json"},
                               json.dumps({"outcome": "failed", "times": uses}).encode()))
    total = uses + extra
    results: list[str] = []
    lock = threading.Lock()

    def worker(index: int, count: int) -> None:
        backend = backends[index % 2]
        for _ in range(count):
            resp = backend.handle(Request("POST", "/v2/prepare_inbound", headers, client_body))
            with lock:
                results.append(json.loads(resp.body)["call_status"])

    shares = [total // threads + (1 if i < total % threads else 0) for i in range(threads)]
    pool = [threading.Thread(target=worker, args=(i, n)) for i, n in enumerate(shares)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert results.count("failed") == uses and results.count("registered") == extra


@given(st.integers(0, 2**32), st.floats(0.0, 1.0), st.integers(200, 600))
def test_seeded_rate_stays_inside_a_binomial_bound(seed, p, n):
    hits = sum(outcomes.pick({"failed": p}, outcomes.unit(seed, "http", i)) == "failed" for i in range(1, n + 1))
    bound = 5 * math.sqrt(n * p * (1 - p)) + 1
    assert abs(hits - n * p) <= bound


def test_same_seed_same_sequence_different_seed_different(make_client):
    def sequence(seed):
        client, _ = make_client(policy={"seed": seed, "http": {"rates": {"failed": 0.3, "rate_limited": 0.2}},
                                        "sip": {"rates": {"busy": 0.5}}})
        out = []
        for _ in range(30):
            resp = prepare(client)
            out.append(resp.json.get("call_status") or resp.status_code)
        return out

    assert sequence(42) == sequence(42)
    assert sequence(42) != sequence(43)


def test_latency_distributions():
    assert outcomes.latency_ms({"dist": "fixed", "ms": 50}, 0.9) == 50
    assert outcomes.latency_ms({"dist": "uniform", "min_ms": 10, "max_ms": 20}, 0.5) == 15
    median = outcomes.latency_ms({"dist": "lognormal", "median_ms": 100, "sigma": 0.5}, 0.5)
    assert abs(median - 100) < 1e-6
    assert outcomes.latency_ms({"dist": "lognormal", "median_ms": 100, "sigma": 0.5}, 0.99) > 300


def test_policy_latency_sets_answer_delays():
    backend = Backend(MockConfig(policy={"seed": 3, "http": {"latency": {"dist": "fixed", "ms": 5}},
                                         "sip": {"latency": {"dist": "uniform", "min_ms": 100, "max_ms": 200}}}))
    headers = {"authorization": "Bearer t", "content-type": "application/json"}
    resp = backend.handle(Request("POST", "/v2/prepare_inbound", headers, json.dumps(VALID_BODY).encode()))
    assert resp.status == 200 and resp.delay_s == pytest.approx(0.005)
    _, plan = backend.store.status_and_plan(json.loads(resp.body)["synthflow_call_id"])
    assert 100 <= plan["sip-answer-ms"] <= 200 and plan["reason"].startswith("seeded:3#")


def test_policy_admin_validation(client):
    assert client.get("/_mock/policy").json == {"policy": None}
    assert_error(client.put("/_mock/policy", json={"http": {"rates": {"failed": 1.5}}}), 422, "validation_error")
    assert_error(client.put("/_mock/policy", json={"http": {"rates": {"failed": 0.6, "slow": 0.6}}}), 422,
                 "validation_error")
    ok = client.put("/_mock/policy", json={"seed": 9, "http": {"rates": {"failed": 0.5}}})
    assert ok.json["policy"]["seed"] == 9


def test_verify_counts_and_explains_near_misses(client):
    prepare(client)
    prepare(client, headers={"Prefer": "outcome=failed"})
    ok = client.post("/_mock/verify", json={"path": "/v2/prepare_inbound", "outcome": "failed", "count": {"eq": 1}})
    assert ok.json["ok"] and ok.json["matched"] == 1
    miss = client.post("/_mock/verify", json={"path": "/v2/prepare_inbound", "status": 429}).json
    assert not miss["ok"] and miss["matched"] == 0
    assert any("status: expected 429, got 200" in d for d in miss["near_misses"][0]["differences"])
    bad = client.post("/_mock/verify", json={"colour": "red"})
    assert_error(bad, 422, "validation_error")


def test_error_outcomes_carry_their_own_request_id_under_threads():
    backend = Backend(MockConfig())
    headers = {"authorization": "Bearer t", "content-type": "application/json", "prefer": "outcome=server_error"}
    mismatches: list[tuple[str, str]] = []

    def hammer() -> None:
        for _ in range(50):
            resp = backend.handle(Request("POST", "/v2/prepare_inbound", headers, json.dumps(VALID_BODY).encode()))
            if resp.headers["X-Request-Id"] != resp.body["detail"]["request_id"]:
                mismatches.append((resp.headers["X-Request-Id"], resp.body["detail"]["request_id"]))

    pool = [threading.Thread(target=hammer) for _ in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert mismatches == []
