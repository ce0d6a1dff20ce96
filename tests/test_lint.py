"""<Sip> URI and TwiML lint: each rule has a failing example, and the real twilio library's TwiML lints clean."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from twilio.twiml.voice_response import VoiceResponse

from mock_server import lint, xei

CALL_ID = "a29407fb-1bf2-4be6-9d1d-f501c3dd9a2b"
GOOD = f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B"
E164 = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)


def codes(diags):
    return {d.code for d in diags}


def twiml_for(uri: str) -> str:
    response = VoiceResponse()
    response.dial().sip(uri)
    return str(response)


@given(E164, st.uuids(version=4), st.lists(st.text(min_size=1, max_size=15), max_size=2))
def test_twiml_made_by_the_twilio_library_lints_clean(number, call_id, extra_values):
    headers = [(f"X-Extra{i}", v) for i, v in enumerate(extra_values)]
    uri = xei.build_sip_uri(number, xei=xei.format_call_id(str(call_id)), headers=headers)
    assume(len(uri) < lint.MAX_URI)  # percent-encoding can triple a value; longer URIs are rightly flagged
    assert lint.lint_twiml(twiml_for(uri)) == []


def test_good_uri_is_clean():
    assert lint.lint_sip_uri(GOOD) == []


@pytest.mark.parametrize("uri, code, severity, fragment", [
    (f"http://+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B", "bad-scheme", "error", "not sip"),
    (f"sip:sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B", "missing-user", "error", "no user part"),
    (f"sip:15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B", "user-not-e164", "warning", "E.164"),
    (f"sip:+15551234567@example.com:32681?X-EI=S.{CALL_ID}%3B", "unexpected-host", "error", "example.com"),
    (f"sip:+15551234567@sip.synthflow.ai?X-EI=S.{CALL_ID}%3B", "missing-port", "error", "5060"),
    (f"sip:+15551234567@sip.synthflow.ai:5060?X-EI=S.{CALL_ID}%3B", "wrong-port", "error", "32681"),
    (f"sip:+15551234567@sip.synthflow.ai:32681;transport=tls?X-EI=S.{CALL_ID}%3B", "wrong-port", "error", "32682"),
    (f"sip:+15551234567@sip.synthflow.ai:abc?X-EI=S.{CALL_ID}%3B", "bad-port", "error", "not a number"),
    ("sip:+15551234567@sip.synthflow.ai:32681", "missing-xei", "error", "no headers"),
    ("sip:+15551234567@sip.synthflow.ai:32681?X-Other=1", "missing-xei", "error", "no X-EI"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B;transport=tcp", "uri-param-after-headers",
     "error", "transport"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID};", "raw-semicolon", "warning", "%3B"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B&Custom=1", "header-name", "error", "X-"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B&X-Twilio-Foo=1", "reserved-header", "error",
     "X-Twilio"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B&X-Name=Bob Smith", "unescaped-characters",
     "error", "' '"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B&X-Flag", "header-without-value", "error", "%26"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%253B", "escaped-twice", "error", "twice"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI={CALL_ID}%3B", "missing-prefix", "error", "no prefix"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}", "missing-terminator", "error", "';'"),
    ("sip:+15551234567@sip.synthflow.ai:32681?X-EI=E.crm1%3B", "missing-call-id", "error", "no S. token"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B&X-EI=E.x%3B", "multiple-headers", "error",
     "2 X-EI"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B&X-Pad={'a' * 1024}", "headers-too-long", "error",
     "1024"),
    (f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID}%3B&X-Pad={'a' * 200}", "uri-too-long", "error",
     "255"),
])
def test_each_rule_names_its_problem(uri, code, severity, fragment):
    found = [d for d in lint.lint_sip_uri(uri) if d.code == code]
    assert found, codes(lint.lint_sip_uri(uri))
    assert found[0].severity == severity
    assert fragment in found[0].message + found[0].hint


def test_raw_semicolon_form_from_synthflows_page_is_only_a_warning():
    diags = lint.lint_sip_uri(f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{CALL_ID};")
    assert not lint.has_errors(diags) and codes(diags) == {"raw-semicolon"}


def test_local_target_accepts_the_mock():
    target = lint.Target(hosts=("127.0.0.1",), ports={"udp": 5070, "tcp": 5070})
    assert lint.lint_sip_uri(f"sip:+15551234567@127.0.0.1:5070?X-EI=S.{CALL_ID}%3B", target) == []


@pytest.mark.parametrize("doc, code", [
    ("<Response><Dial><Sip>sip:+1555@sip.synthflow.ai:32681?X-EI=S.x%3B&X-A=b</Sip></Dial></Response>",
     "xml-unescaped-ampersand"),
    ("<Response><Dial><Sip>sip:x", "xml-invalid"),
    ("<Reply><Dial/></Reply>", "no-response"),
    ("<Response><Say>hi</Say></Response>", "no-dial-sip"),
    (f"<Response><Dial><Sip>{GOOD}</Sip><Sip>{GOOD}</Sip></Dial></Response>", "several-sip"),
])
def test_twiml_document_rules(doc, code):
    assert code in codes(lint.lint_twiml(doc))


def test_twiml_with_escaped_ampersand_is_clean():
    uri = f"{GOOD}&X-Name=Bob"
    doc = twiml_for(uri)
    assert "&amp;" in doc and lint.lint_twiml(doc) == []


def test_twiml_with_synthflows_documented_raw_semicolon_form():
    doc = twiml_for(f"sip:+15551234567@sip.synthflow.ai:32681?X-EI=S.{uuid.uuid4()};")
    assert codes(lint.lint_twiml(doc)) == {"raw-semicolon"}
