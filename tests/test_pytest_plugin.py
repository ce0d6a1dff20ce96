"""The pytest plugin, used by a separate temporary test project (pytester)."""

from __future__ import annotations

import glob
import os
import tempfile

import pytest

pytestmark = pytest.mark.live

PROJECT_TESTS = '''
import requests
from twilio.twiml.voice_response import VoiceResponse
from mock_server import xei
from mock_server.sip.client import SipCaller

BODY = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "m1"}


def test_in_process(synthflow_mock):
    resp = requests.post("https://api.synthflow.ai/v2/prepare_inbound", json=BODY,
                         headers={"Authorization": "Bearer k"}, timeout=5)
    assert resp.json()["call_status"] == "registered"
    synthflow_mock.assert_prepared(from_number="+15075785607")


def test_live_server_whole_flow(synthflow_server):
    call = synthflow_server.prepare(BODY)
    twiml = VoiceResponse()
    twiml.dial().sip(synthflow_server.sip_uri("+15551234567", call["synthflow_call_id"]))
    uri = str(twiml).split("<Sip>")[1].split("</Sip>")[0].replace("&amp;", "&")
    headers = xei.uri_headers(uri)
    result = SipCaller(synthflow_server.sip_host, synthflow_server.sip_port).call(uri.split("?")[0], headers,
                                                                                  hold_s=0.05)
    assert result.answered, result
    synthflow_server.assert_prepared(from_number="+15075785607")
    entry = synthflow_server.assert_invite(call["synthflow_call_id"])
    assert entry["decision"] == "accepted"


def test_fresh_state_per_test(synthflow_server):
    assert synthflow_server.calls() == []


def test_assert_invite_failure_shows_what_arrived(synthflow_server):
    SipCaller(synthflow_server.sip_host, synthflow_server.sip_port).call(
        f"sip:+15551234567@127.0.0.1:{synthflow_server.sip_port}", [("X-EI", "S.not-prepared")], hold_s=0)
    try:
        synthflow_server.assert_invite("a29407fb-1bf2-4be6-9d1d-f501c3dd9a2b", timeout=0.5)
    except AssertionError as exc:
        text = str(exc)
    else:
        raise AssertionError("assert_invite passed without an INVITE for the call")
    assert "INVITEs that arrived" in text and "S.not-prepared" in text and "does not end with" in text
'''


def test_a_separate_project_uses_the_fixtures(pytester):
    leftovers = set(glob.glob(os.path.join(tempfile.gettempdir(), "synthflow-mock-*")))
    pytester.makepyfile(test_integration=PROJECT_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    # the live server's store, metrics directory and log are gone once the session ends
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "synthflow-mock-*"))) <= leftovers


def test_the_plugin_is_registered_through_its_entry_point(pytester):
    pytester.makepyfile(test_fixtures="def test_listed(request):\n"
                                      "    assert 'synthflow_server' in request.fixturenames or True\n")
    result = pytester.runpytest_subprocess("--fixtures", "-q")
    result.stdout.fnmatch_lines(["*synthflow_mock*", "*synthflow_server*"])


MISTAKES_APP = '''
import os
import requests
from flask import Flask, request
from twilio.twiml.voice_response import VoiceResponse

app = Flask(__name__)


@app.post("/voice")
def voice():
    mistake = os.environ.get("MISTAKE", "")
    key = "" if mistake == "bad-token" else "my-key"
    call_id = "a29407fb-1bf2-4be6-9d1d-f501c3dd9a2b"
    if mistake != "skip-prepare":
        resp = requests.post("https://api.synthflow.ai/v2/prepare_inbound", timeout=5,
                             headers={"Authorization": f"Bearer {key}"},
                             json={"from_number": request.form["From"], "to_number": request.form["To"],
                                   "model_id": "m1"})
        if resp.status_code != 200:
            return "prepare failed", 502
        call_id = resp.json()["synthflow_call_id"]
    end = "" if mistake == "missing-%3B" else "%3B"
    twiml = VoiceResponse()
    twiml.dial().sip(f"sip:{request.form['To']}@sip.synthflow.ai:32681?X-EI=S.{call_id}{end}")
    return str(twiml)
'''

USER_TEST = '''
from app import app


def test_my_webhook_dials_the_prepared_call(synthflow_mock):
    answer = app.test_client().post("/voice", data={"From": "+15075785607", "To": "+15551234567"})
    if answer.status_code == 200:
        synthflow_mock.assert_twiml(answer.get_data(as_text=True))
    synthflow_mock.assert_prepared(from_number="+15075785607")
'''


@pytest.mark.parametrize("mistake, says", [
    ("", None),
    ("missing-%3B", "the TwiML would not reach the prepared call"),
    ("skip-prepare", "which this mock never prepared (prepared: []); was prepare_inbound skipped"),
    ("bad-token", "the mock refused these prepare_inbound requests: 401 unauthorized (the mock refused the API key"),
])
def test_a_planted_mistake_fails_the_users_test_naming_it_without_plugin_frames(pytester, monkeypatch, mistake,
                                                                                 says):
    pytester.makepyfile(app=MISTAKES_APP, test_user=USER_TEST)
    monkeypatch.setenv("MISTAKE", mistake)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    output = result.stdout.str()
    if says is None:
        result.assert_outcomes(passed=1)
        return
    result.assert_outcomes(failed=1)
    assert says in output, output
    assert "pytest_plugin.py" not in output, output  # the plugin's frames are hidden
    if mistake == "missing-%3B":
        assert "X-EI" in output and "hint:" in output
