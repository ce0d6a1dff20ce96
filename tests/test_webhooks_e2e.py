"""End to end with real processes (issue #15): the example app (uvicorn, its own process) answers the
Twilio simulator, the live mock plays the call and the agent hangs up, and the app receives the
post-call webhook and verifies its signature the documented way."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from examples.integration import settings as example_settings
from mock_server.testing import free_port, start_server
from mock_server.twilio_sim import simulate_call

pytestmark = pytest.mark.live
SECRET = "e2e-workspace-secret"
AGENT_HANGS_UP = "+15550101299"  # magic caller number: the mock's agent hangs up after 2 s


@pytest.fixture(scope="module")
def mock():
    server = start_server("--sip-t1-ms", "100", "--webhook-backoff-s", "0.1", "--webhook-retries", "2", "--quiet")
    yield server
    server.stop()


def start_app(mock, secret: str):
    port = free_port()
    env = {**os.environ, "SYNTHFLOW_BASE_URL": mock.url, "SYNTHFLOW_API_KEY": "e2e-key",
           "SYNTHFLOW_WEBHOOK_SECRET": secret}
    env.pop("EXAMPLE_MISTAKE", None)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/synthflow/received", timeout=0.5)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the example app did not start")


@pytest.fixture(params=["right secret", "wrong secret"])
def app(request, mock):
    proc, url = start_app(mock, SECRET if request.param == "right secret" else "not-the-workspace-secret")
    model = example_settings()["model_id"]
    requests.put(f"{mock.url}/_mock/agents", timeout=5, json={
        "workspaces": {"ws-e2e": {"webhook_secret": SECRET}},
        "agents": {model: {"workspace_id": "ws-e2e", "external_webhook_url": f"{url}/synthflow/webhook"}}}
    ).raise_for_status()
    yield request.param, url
    proc.terminate()
    proc.wait(10)


def test_the_app_receives_the_post_call_webhook_and_checks_its_signature(mock, app):
    which, url = app
    report = simulate_call(f"{url}/voice", AGENT_HANGS_UP, "+15551234567", mock_url=mock.url,
                           sip_target=("127.0.0.1", mock.sip_port), hold_s=6, webhook_wait_s=8)
    text = report.render()
    steps = {c.name: c for c in report.checks}
    assert steps["SIP answer"].ok and "BYE <- far end" in steps["SIP answer"].detail, text
    hook_step = steps["post-call webhook delivered and accepted"]
    call_id = report.twiml.split("S.", 1)[1].split("%3B", 1)[0]
    journal = requests.get(f"{mock.url}/_mock/journal", params={"kind": "webhook", "call_id": call_id},
                           timeout=5).json()["entries"]
    received = requests.get(f"{url}/synthflow/received", timeout=5).json()
    if which == "right secret":
        assert report.ok and hook_step.ok, text
        [payload] = received
        assert payload["call"]["call_id"] == call_id and payload["status"] == "completed"
        assert payload["call"]["end_call_reason"] == "agent_ended_call"
        assert [(e["attempt"], e["status"]) for e in journal] == [(1, 200)]
    else:
        assert not hook_step.ok and "-> 401" in hook_step.detail, text
        assert received == []  # the app kept nothing it could not verify
        # the mock retried (2 retries) and then put the failure on the call's timeline
        assert [(e["attempt"], e["status"], e["outcome"]) for e in journal] == [
            (1, 401, "failed"), (2, 401, "failed"), (3, 401, "failed")]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            timeline = [t["event"] for t in requests.get(f"{mock.url}/v2/calls/{call_id}", timeout=5, headers={
                "Authorization": "Bearer k"}).json()["response"]["calls"][0]["timeline"]]
            if "webhook_failed" in timeline:
                break
            time.sleep(0.1)
        assert timeline[-1] == "webhook_failed", timeline


def test_assert_webhook_returns_the_delivery_or_shows_what_did_arrive(synthflow_server):
    from mock_server.sip.client import SipCaller
    from tests.receiver import Receiver

    receiver = Receiver()
    try:
        synthflow_server.set_agents({"agents": {"m-fixture": {"external_webhook_url": receiver.url("/hook")}}})
        call = synthflow_server.prepare({"from_number": "+15075785607", "to_number": "+15551234567",
                                         "model_id": "m-fixture"})
        call_id = call["synthflow_call_id"]
        result = SipCaller("127.0.0.1", synthflow_server.sip_port, t1=0.1).call(
            synthflow_server.sip_uri("+15551234567", call_id).split("?")[0], [("X-EI", f"S.{call_id};")], hold_s=0)
        assert result.answered
        entry = synthflow_server.assert_webhook(call_id, status="completed")
        assert entry["status"] == 200 and entry["url"] == receiver.url("/hook")
        scrape = requests.get(f"{synthflow_server.url}/_mock/metrics", timeout=5).text
        assert 'synthflow_mock_webhook_attempts_total{event="post_call",outcome="delivered"}' in scrape
        with pytest.raises(AssertionError) as failed:
            synthflow_server.assert_webhook(call_id, status="busy", timeout=0.5)
        message = str(failed.value)
        assert "no post_call webhook with status 'busy'" in message
        assert f"#1 POST {receiver.url('/hook')} -> 200 (payload status 'completed')" in message
    finally:
        synthflow_server.set_agents({})
        receiver.close()
