"""The in-process door answers httpx too (sync and async), over the same core as requests (issue #17)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mock_server import synthflow_mock
from tests.contract import assert_matches
from tests.data import VALID_BODY
from tests.receiver import Receiver

API = "https://api.synthflow.ai/v2"
AUTH = {"Authorization": "Bearer t"}


def test_sync_client_is_answered_by_the_core_and_journaled():
    client = httpx.Client()  # made before the mock starts: still answered
    with synthflow_mock() as mock:
        resp = client.post(f"{API}/prepare_inbound", json=VALID_BODY, headers=AUTH)
        assert resp.status_code == 200
        assert_matches("prepare-inbound-registered.schema.json", resp.json())
        [call] = mock.calls()
        assert call["synthflow_call_id"] == resp.json()["synthflow_call_id"]
        looked_up = client.get(f"{API}/calls/{call['synthflow_call_id']}", headers=AUTH)
        assert looked_up.json()["response"]["calls"][0]["call_status"] == "registered"
        assert mock.journal()[0]["path"] == "/v2/prepare_inbound"
    client.close()


def test_async_client_is_answered_by_the_core():
    async def run():
        async with httpx.AsyncClient() as client:
            return await client.post("https://api.eu.synthflow.ai/v2/prepare_inbound", json=VALID_BODY, headers=AUTH)

    with synthflow_mock() as mock:
        resp = asyncio.run(run())
        assert resp.status_code == 200 and len(mock.calls()) == 1


def test_a_fastapi_app_that_calls_synthflow_with_httpx_stays_in_process():
    app = FastAPI()

    @app.post("/voice")
    async def voice() -> dict:
        async with httpx.AsyncClient() as client:
            resp = await client.post(f"{API}/prepare_inbound", json=VALID_BODY, headers=AUTH)
        return {"status": resp.status_code, "call_id": resp.json().get("synthflow_call_id")}

    with synthflow_mock() as mock, TestClient(app) as client:
        answer = client.post("/voice").json()
        assert answer["status"] == 200
        assert mock.calls()[0]["synthflow_call_id"] == answer["call_id"]


def test_dropping_outcomes_raise_what_httpx_raises_for_a_dead_server_without_waiting():
    with synthflow_mock(), httpx.Client() as client:
        with pytest.raises(httpx.ReadError):
            client.post(f"{API}/prepare_inbound", json=VALID_BODY, headers={**AUTH, "Prefer": "outcome=reset"})
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"{API}/prepare_inbound", json=VALID_BODY, timeout=2.0,
                        headers={**AUTH, "Prefer": "outcome=timeout, hold-s=30"})
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(f"{API}/prepare_inbound", json=VALID_BODY, timeout=60.0,
                        headers={**AUTH, "Prefer": "outcome=timeout, hold-s=30"})
        assert time.monotonic() - started < 5  # a 30 s hold, not waited out


def test_slow_answers_say_their_delay_instead_of_sleeping_unless_real_time():
    headers = {**AUTH, "Prefer": "outcome=slow, delay-ms=700"}
    with synthflow_mock(), httpx.Client() as client:
        started = time.monotonic()
        resp = client.post(f"{API}/prepare_inbound", json=VALID_BODY, headers=headers)
        assert resp.status_code == 200 and resp.headers["X-Mock-Delay-Ms"] == "700"
        assert time.monotonic() - started < 0.6
    with synthflow_mock(real_time=True), httpx.Client() as client:
        started = time.monotonic()
        resp = client.post(f"{API}/prepare_inbound", json=VALID_BODY, headers=headers)
        assert time.monotonic() - started >= 0.7 and "X-Mock-Delay-Ms" not in resp.headers


@pytest.mark.parametrize("url", ["https://sip.synthflow.ai/", "https://hooks.synthflow.ai/v2/x", "http://synthflow.ai/"])
def test_other_synthflow_hosts_fail_loudly_in_both_clients(url):
    with synthflow_mock():
        with pytest.raises(httpx.ConnectError, match="does not serve"):
            httpx.get(url)
        with pytest.raises(requests.ConnectionError, match="does not serve"):
            requests.get(url, timeout=5)


def test_other_hosts_still_reach_the_network():
    receiver = Receiver()
    try:
        with synthflow_mock():
            assert httpx.get(receiver.url("/ping")).status_code == 200
        assert receiver.received[0].path == "/ping"
    finally:
        receiver.close()


def test_the_patch_is_removed_when_the_last_mock_stops():
    original = httpx.HTTPTransport.handle_request
    with synthflow_mock(), synthflow_mock():
        assert httpx.HTTPTransport.handle_request is not original
    assert httpx.HTTPTransport.handle_request is original
