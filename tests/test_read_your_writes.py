"""Read-your-writes across HTTP workers and the SIP process: whatever an answer reported, the next
request finds, whichever worker or door it reaches."""

from __future__ import annotations

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_server.sip.client import SipCaller
from mock_server.testing import start_server
from tests.data import AUTH, VALID_BODY


@pytest.fixture(scope="module")
def two_workers():
    server = start_server("--workers", "2", "--sip-t1-ms", "100")
    yield server
    server.kill_group()


@settings(max_examples=25, deadline=None)
@given(steps=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=6))
def test_a_call_is_found_right_after_its_prepare_on_any_worker(two_workers, steps):
    kept = requests.Session()
    for reuse_for_prepare, reuse_for_get in steps:
        prepare_client = kept if reuse_for_prepare else requests
        resp = prepare_client.post(f"{two_workers.url}/v2/prepare_inbound", json=VALID_BODY, headers=AUTH, timeout=5)
        call_id = resp.json()["synthflow_call_id"]
        get_client = kept if reuse_for_get else requests
        found = get_client.get(f"{two_workers.url}/v2/calls/{call_id}", headers=AUTH, timeout=5)
        assert found.status_code == 200, (call_id, found.text)
        assert found.json()["response"]["calls"][0]["synthflow_call_id"] == call_id
    kept.close()


def test_both_workers_answer_and_each_finds_the_others_calls(two_workers):
    seen: dict[str, str] = {}
    while len(seen) < 60 or (len(set(seen.values())) < 2 and len(seen) < 500):  # the kernel picks the worker
        resp = requests.post(f"{two_workers.url}/v2/prepare_inbound", json=VALID_BODY, headers=AUTH, timeout=5)
        seen[resp.json()["synthflow_call_id"]] = resp.headers["X-Mock-Worker"]
    assert len(set(seen.values())) == 2, "the kernel gave every connection to one worker"
    for call_id, prepared_by in seen.items():
        found = requests.get(f"{two_workers.url}/v2/calls/{call_id}", headers=AUTH, timeout=5)
        assert found.status_code == 200
        if found.headers["X-Mock-Worker"] != prepared_by:
            break
    else:
        pytest.fail("no GET reached the other worker")


def test_an_invite_right_after_the_prepare_finds_the_call(two_workers):
    caller = SipCaller("127.0.0.1", two_workers.sip_port, t1=0.1, timeout=5)
    for _ in range(10):
        call_id = requests.post(f"{two_workers.url}/v2/prepare_inbound", json=VALID_BODY, headers=AUTH,
                                timeout=5).json()["synthflow_call_id"]
        result = caller.call(f"sip:+15551234567@127.0.0.1:{two_workers.sip_port}",
                             [("X-EI", f"S.{call_id};")], hold_s=0)
        assert result.answered, [(s.name, s.status, s.reason) for s in result.steps]


def test_seeded_ids_are_one_sequence_across_workers_and_restart_with_a_reset():
    """Each worker once seeded its own generator: both minted the same ids, and every second prepare was a
    503 (the store refused the duplicate). The n-th prepare now gets the n-th id whichever worker answers."""
    server = start_server("--workers", "2", "--seed", "7", "--no-sip")
    try:
        def prepares(count: int) -> tuple[list[str], set[str]]:
            ids, workers = [], set()
            for _ in range(count):  # a new connection each time, so the kernel spreads them over the workers
                resp = requests.post(f"{server.url}/v2/prepare_inbound", json=VALID_BODY, headers=AUTH, timeout=5)
                assert resp.status_code == 200, resp.text
                ids.append(resp.json()["synthflow_call_id"])
                workers.add(resp.headers["X-Mock-Worker"])
            return ids, workers

        first, workers = prepares(24)
        assert len(workers) == 2 and len(set(first)) == 24
        assert requests.post(f"{server.url}/_mock/reset", json={}, timeout=5).status_code == 200
        again, _ = prepares(24)
        assert again == first
    finally:
        server.kill_group()
