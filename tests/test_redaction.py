"""Credentials never reach the journal in clear: any header or query parameter that names one, and SIP
Authorization/Proxy-Authorization. Each is kept as a salted fingerprint, so two can be told apart."""

from __future__ import annotations

import json

import pytest

from mock_server import MockConfig
from mock_server.core.journal import fingerprint, redact_sip
from tests.data import VALID_BODY

SECRET = "s3cr3t-value-123"


@pytest.mark.parametrize("header", ["Authorization", "X-Api-Key", "Api-Key", "X-Auth-Token",
                                    "X-Mock-Admin-Token", "X-Client-Secret", "Proxy-Authorization",
                                    "X-Twilio-Signature"])
def test_a_credential_header_is_journaled_as_a_fingerprint(make_client, header):
    client, backend = make_client()
    value = f"Bearer {SECRET}" if "authorization" in header.lower() else SECRET
    client.post("/v2/prepare_inbound", json=VALID_BODY, headers={"Authorization": "Bearer t", header: value})
    entry = backend.store.journal()[-1]
    assert SECRET not in json.dumps(entry)
    assert "<redacted sha256:" in entry["headers"][header.lower()]


@pytest.mark.parametrize("param", ["api_key", "apikey", "token", "access_token", "client_secret", "password"])
def test_a_credential_in_the_query_string_is_journaled_as_a_fingerprint(make_client, param):
    client, backend = make_client()
    client.get(f"/v2/calls/x?{param}={SECRET}&page=2", headers={"Authorization": "Bearer t"})
    entry = backend.store.journal()[-1]
    assert SECRET not in json.dumps(entry)
    assert entry["query"]["page"] == "2" and entry["query"][param].startswith("<redacted sha256:")


def test_cookies_and_session_headers_are_redacted_too():
    from mock_server.core.journal import redact_headers

    out = redact_headers({"cookie": f"sid={SECRET}", "x-session-id": SECRET, "content-type": "application/json"}, "s")
    assert SECRET not in json.dumps(out) and out["content-type"] == "application/json"


def test_fingerprints_are_salted_per_server_and_stable_within_one():
    a, b = MockConfig(), MockConfig()
    assert a.redaction_salt != b.redaction_salt
    assert fingerprint(SECRET, a.redaction_salt) == fingerprint(SECRET, a.redaction_salt)
    assert fingerprint(SECRET, a.redaction_salt) != fingerprint(SECRET, b.redaction_salt)
    assert fingerprint(SECRET, a.redaction_salt) != fingerprint("other", a.redaction_salt)


def test_sip_digest_credentials_are_redacted_in_the_raw_message():
    raw = ("INVITE sip:a@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
           f'Authorization: Digest username="alice", realm="x", nonce="n", response="{SECRET}"\r\n'
           f'proxy-authorization: Digest username="bob", response="{SECRET}"\r\nCall-ID: c\r\n\r\n')
    redacted = redact_sip(raw, "salt")
    assert SECRET not in redacted and "alice" not in redacted and "bob" not in redacted
    assert "Authorization: Digest <redacted sha256:" in redacted
    assert "proxy-authorization: Digest <redacted sha256:" in redacted
    assert redacted.endswith("Call-ID: c\r\n\r\n")


def test_sip_authorization_reaches_the_journal_redacted(tmp_path):
    from tests.sip_client import UdpClient, request
    from tests.trunk import Trunk

    trunk = Trunk()
    try:
        client = UdpClient(trunk.port)
        client.send(request("OPTIONS", trunk.port, client.local_port,
                            extra=f'Authorization: Digest username="alice", response="{SECRET}"\r\n'))
        assert client.recv().status == 200
        client.sock.close()
        trunk.sip.flush()
        raws = [e["raw"] for e in trunk.backend.store.journal(kinds=("sip",))]
        assert raws and not any(SECRET in raw for raw in raws)
        assert any("Authorization: Digest <redacted sha256:" in raw for raw in raws)
    finally:
        trunk.stop()


def test_the_admin_token_can_come_from_a_file_so_it_stays_out_of_ps(tmp_path):
    from mock_server.cli import _config_from, build_parser

    path = tmp_path / "token"
    path.write_text("from-a-file\n")
    assert _config_from(build_parser().parse_args(["serve", "--admin-token-file", str(path)])).admin_token == \
        "from-a-file"
    path.write_text("\n")
    with pytest.raises(SystemExit, match="first line is empty"):
        _config_from(build_parser().parse_args(["serve", "--admin-token-file", str(path)]))
