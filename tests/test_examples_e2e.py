"""The example integrator apps, run through the Twilio simulator against a live harness.

The correct app passes every step; each planted mistake is caught with its own message.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import uvicorn
from werkzeug.serving import make_server

from examples.fastapi_app import app as fastapi_app
from examples.flask_app import app as flask_app
from mock_server.testing import free_port, start_server
from mock_server.twilio_sim import simulate_call

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def flask_webhook():
    server = make_server("127.0.0.1", free_port(), flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/voice"
    server.shutdown()


@pytest.fixture(scope="module")
def fastapi_webhook():
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fastapi_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        pass
    yield f"http://127.0.0.1:{port}/voice"
    server.should_exit = True
    thread.join(5)


@pytest.fixture(params=["flask", "fastapi"])
def webhook(request, synthflow_server, monkeypatch):
    monkeypatch.setenv("SYNTHFLOW_BASE_URL", synthflow_server.url)
    monkeypatch.setenv("SYNTHFLOW_API_KEY", "test-key")
    monkeypatch.delenv("EXAMPLE_MISTAKE", raising=False)
    return request.getfixturevalue(f"{request.param}_webhook")


def run(webhook, synthflow_server, **kw):
    return simulate_call(webhook, "+15075785607", "+15551234567", mock_url=synthflow_server.url,
                         sip_target=("127.0.0.1", synthflow_server.sip_port), **kw)


def check(report, name):
    return next(c for c in report.checks if c.name == name)


def test_correct_app_passes_every_step(webhook, synthflow_server):
    report = run(webhook, synthflow_server)
    assert report.ok, report.render()
    assert [c.name for c in report.checks] == ["webhook answered", "prepare_inbound called",
                                               "TwiML <Dial><Sip> valid", "X-EI valid", "call id was prepared",
                                               "SIP answer"]
    call = synthflow_server.calls()[0]
    synthflow_server.assert_invite(call["synthflow_call_id"])


def test_signed_webhook(webhook, synthflow_server):
    assert run(webhook, synthflow_server, auth_token="12345").ok


@pytest.mark.parametrize("mistake, step, message", [
    ("raw-semicolon", "TwiML <Dial><Sip> valid", "raw-semicolon"),
    ("missing-prefix", "X-EI valid", "has no prefix"),
    ("wrong-port", "TwiML <Dial><Sip> valid", "wrong-port: port 5060"),
    ("skip-prepare", "prepare_inbound called", "prepare skipped"),
])
def test_each_planted_mistake_is_caught(webhook, synthflow_server, monkeypatch, mistake, step, message):
    monkeypatch.setenv("EXAMPLE_MISTAKE", mistake)
    report = run(webhook, synthflow_server)
    found = check(report, step)
    assert message in found.detail + " ".join(found.warnings), report.render()
    if mistake == "raw-semicolon":
        assert found.ok  # Synthflow's own documented form: a warning, and the call still works
    else:
        assert not report.ok


def test_cli_prints_the_report_and_exits_non_zero_on_failure(flask_webhook, synthflow_server, monkeypatch):
    monkeypatch.setenv("SYNTHFLOW_BASE_URL", synthflow_server.url)
    monkeypatch.setenv("SYNTHFLOW_API_KEY", "test-key")
    monkeypatch.delenv("EXAMPLE_MISTAKE", raising=False)
    ok = subprocess.run([sys.executable, "-m", "mock_server", "call", "--webhook", flask_webhook,
                         "--from", "+15075785607", "--to", "+15551234567", "--mock-url", synthflow_server.url,
                         "--sip-target", f"127.0.0.1:{synthflow_server.sip_port}"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "[PASS] SIP answer: 200 OK" in ok.stdout
    monkeypatch.setenv("EXAMPLE_MISTAKE", "skip-prepare")
    bad = subprocess.run([sys.executable, "-m", "mock_server", "call", "--webhook", flask_webhook,
                          "--from", "+15075785607", "--to", "+15551234567", "--mock-url", synthflow_server.url,
                          "--sip-target", f"127.0.0.1:{synthflow_server.sip_port}"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "[FAIL] prepare_inbound called" in bad.stdout


def test_the_simulators_signature_is_the_one_twilio_python_validates():
    from twilio.request_validator import RequestValidator

    from mock_server.twilio_sim import sign

    params = {"CallSid": "CA123", "From": "+15075785607", "To": "+15551234567", "Direction": "inbound"}
    url = "https://example.com/voice?x=1"
    signature = sign(url, params, "secret-token")
    assert signature == RequestValidator("secret-token").compute_signature(url, params)
    assert RequestValidator("secret-token").validate(url, params, signature)


def test_a_401_on_prepare_is_reported_as_a_401(flask_webhook, synthflow_server, monkeypatch):
    monkeypatch.setenv("SYNTHFLOW_BASE_URL", synthflow_server.url)
    monkeypatch.setenv("SYNTHFLOW_API_KEY", "")  # the empty key: the app still calls, and is refused
    monkeypatch.delenv("EXAMPLE_MISTAKE", raising=False)
    report = run(flask_webhook, synthflow_server)
    step = check(report, "prepare_inbound called")
    assert not step.ok and "-> 401 unauthorized: the mock refused the API key" in step.detail, report.render()
    assert "prepare skipped" not in step.detail


def test_a_wrong_mock_url_is_named_as_such(webhook, synthflow_server):
    other = start_server("--no-sip", "--quiet")
    try:
        report = simulate_call(webhook, "+15075785607", "+15551234567", mock_url=other.url,
                               sip_target=("127.0.0.1", synthflow_server.sip_port))
    finally:
        other.kill_group()
    assert check(report, "SIP answer").ok  # the trunk the app's mock feeds knows the call
    step = check(report, "call id was prepared")
    assert not step.ok and "--mock-url points at another mock than the one your app calls" in step.detail, \
        report.render()


def test_an_unreachable_mock_is_named_as_such(webhook, synthflow_server):
    report = simulate_call(webhook, "+15075785607", "+15551234567", mock_url="http://127.0.0.1:9",
                           sip_target=("127.0.0.1", synthflow_server.sip_port))
    step = check(report, "prepare_inbound called")
    assert not step.ok and "cannot be reached" in step.detail, report.render()


@pytest.mark.parametrize("app", [flask_app, fastapi_app], ids=["wsgi", "asgi"])
def test_the_fixtures_simulate_call_serves_the_app_itself(app, synthflow_server, monkeypatch):
    monkeypatch.setenv("SYNTHFLOW_BASE_URL", synthflow_server.url)
    monkeypatch.setenv("SYNTHFLOW_API_KEY", "test-key")
    monkeypatch.delenv("EXAMPLE_MISTAKE", raising=False)
    report = synthflow_server.simulate_call(app, "+15075785607", "+15551234567")
    assert report.ok
    monkeypatch.setenv("EXAMPLE_MISTAKE", "wrong-port")
    with pytest.raises(AssertionError) as failed:
        synthflow_server.simulate_call(app, "+15075785607", "+15551234567")
    message = str(failed.value)
    assert message.startswith("the simulated call failed:\nTwilio simulator, call CA")
    assert "[FAIL] TwiML <Dial><Sip> valid: wrong-port: port 5060" in message
