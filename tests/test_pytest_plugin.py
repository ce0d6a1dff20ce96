"""The pytest plugin, used by a separate temporary test project (pytester)."""

from __future__ import annotations

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
    pytester.makepyfile(test_integration=PROJECT_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_the_plugin_is_registered_through_its_entry_point(pytester):
    pytester.makepyfile(test_fixtures="def test_listed(request):\n"
                                      "    assert 'synthflow_server' in request.fixturenames or True\n")
    result = pytester.runpytest_subprocess("--fixtures", "-q")
    result.stdout.fnmatch_lines(["*synthflow_mock*", "*synthflow_server*"])
